"""Zero-shot proposals: beam search finds the controller's most likely architectures, and mode=propose reports them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_controller import all_archs

from helpers.tiny_search import CONF, pretrained, tiny_run  # noqa: F401 - fixture
from mnms.search.controller import Controller, ControllerConfig
from mnms.search.space import SearchSpace
from mnms.transfer.artifact import load_controller_artifact
from mnms.transfer.decode import ProposeConfig, beam_search, controller_for_task
from mnms.utils.config import from_config
from mnms.utils.io import RunDir

DEFAULT = SearchSpace.from_config(OmegaConf.to_container(OmegaConf.load(CONF / "search_space" / "default.yaml")))


def skewed(space: SearchSpace) -> Controller:
    """A far-from-uniform controller, so the ranking of architectures is not a near-tie."""
    torch.manual_seed(0)
    controller = Controller(space, ["a"], ControllerConfig(tanh_clip=None))
    with torch.no_grad():
        for parameter in controller.parameters():
            parameter.normal_(0.0, 0.7)
    return controller


def test_beam_over_the_whole_space_is_the_exact_ranking(pretrained) -> None:
    controller = load_controller_artifact(pretrained).build_controller()
    space = controller.space
    everything = all_archs(space)
    ranked = beam_search(controller, "trec", width=len(everything))
    assert sorted(map(str, (r.arch for r in ranked))) == sorted(map(str, everything))
    assert sum(r.probability for r in ranked) == pytest.approx(1.0, abs=1e-5)
    exact, _ = controller.log_prob_and_entropy("trec", [r.arch for r in ranked])
    assert [r.log_prob for r in ranked] == pytest.approx(exact.tolist(), abs=1e-5)
    assert [r.probability for r in ranked] == sorted((r.probability for r in ranked), reverse=True)


def test_beam_on_the_conditional_default_space_gives_valid_ranked_architectures() -> None:
    controller = skewed(DEFAULT)
    ranked = beam_search(controller, "a", width=5)
    assert len(ranked) == 5 and all(DEFAULT.is_valid(r.arch) for r in ranked)
    assert len({json.dumps(r.arch, sort_keys=True) for r in ranked}) == 5
    assert [r.log_prob for r in ranked] == sorted((r.log_prob for r in ranked), reverse=True)
    exact, _ = controller.log_prob_and_entropy("a", [r.arch for r in ranked])
    assert [r.log_prob for r in ranked] == pytest.approx(exact.tolist(), abs=1e-4)
    (greedy,) = beam_search(controller, "a", width=1)
    assert greedy.arch == controller.greedy("a")


def test_an_unseen_task_gets_an_embedding_per_init(pretrained) -> None:
    artifact = load_controller_artifact(pretrained)
    copied, how = controller_for_task(artifact, "mr", "trec", seed=0)
    assert how == "new, transfer.init=trec" and copied.task_embedding.names[-1] == "mr"
    as_trec = [(r.arch, r.log_prob) for r in beam_search(copied, "trec", 4)]
    assert [(r.arch, r.log_prob) for r in beam_search(copied, "mr", 4)] == as_trec
    assert controller_for_task(artifact, "trec", "mean", seed=0)[1] == "pre-trained"


def test_mode_propose_prints_saves_and_trains_the_proposals(pretrained, session_cache_dir, tmp_path) -> None:
    _, best = tiny_run(
        tmp_path,
        session_cache_dir,
        "mode=propose",
        f"transfer.from={pretrained}",
        "task=mr",
        "transfer.init=mean",
        "propose.k=3",
        "propose.train=true",
    )
    saved = json.loads((tmp_path / RunDir.PROPOSALS).read_text())
    rows = saved["proposals"]
    assert saved["embedding"] == "new, transfer.init=mean" and [row["rank"] for row in rows] == [1, 2, 3]
    assert all(row["status"] == "ok" and 0 < row["metrics"]["val_accuracy"] <= 1 for row in rows)
    assert best == max(row["metrics"]["val_accuracy"] for row in rows)
    assert [row["probability"] for row in rows] == sorted((row["probability"] for row in rows), reverse=True)
    assert all(math.isclose(row["probability"], math.exp(row["log_prob"])) for row in rows)
    assert all(row["arch"]["batch_size"] == 64 and row["decisions"].items() <= row["arch"].items() for row in rows)

    _, untrained = tiny_run(
        tmp_path / "greedy",
        session_cache_dir,
        "mode=propose",
        f"transfer.from={pretrained}",
        "task=mr",
        "transfer.init=mean",
        "propose.method=greedy",
        "propose.k=1",
    )
    greedy = json.loads((tmp_path / "greedy" / RunDir.PROPOSALS).read_text())["proposals"]
    assert untrained is None and len(greedy) == 1 and "status" not in greedy[0]
    assert greedy[0]["decisions"] == rows[0]["decisions"]  # greedy is the top of the beam here


def test_propose_config_errors_name_the_fix(session_cache_dir, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="propose.method=greedy decodes one architecture.*propose.k=1"):
        from_config(ProposeConfig, {"method": "greedy", "k": 5})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['propose.top_k'\]"):
        from_config(ProposeConfig, {"top_k": 5})
    with pytest.raises(ValueError, match="mode=propose needs transfer.from"):
        tiny_run(tmp_path, session_cache_dir, "mode=propose")
