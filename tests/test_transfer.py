"""Transfer: the controller artifact, a pre-trained controller starting a search on a new task, and refusals.

The pre-trained controller comes from a real tiny multitask search (``tiny_search.pretrained``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_search import comparable

from helpers.tiny_search import CONF, PRETRAIN_TASKS, pretrained, tiny, tiny_run  # noqa: F401 - fixture
from mnms.search.records import load_checkpoint, read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import make_strategy, strategy_config
from mnms.search.task_embedding import TaskEmbedding
from mnms.transfer.artifact import load_controller_artifact
from mnms.transfer.warm_start import TransferConfig, warm_start
from mnms.utils.io import RunDir

ROOT = CONF.parent
SMALL = {
    "decisions": [
        {"name": "encoder", "choices": ["words", "char-ngrams"]},
        {"name": "hidden_layers", "choices": [0, 1]},
        {"name": "width_1", "choices": [64, 256], "when": {"hidden_layers": [1]}},
        {"name": "learning_rate", "choices": [0.001, 0.01]},
    ]
}  # the space TINY_SEARCH composes


def strategy_for(
    source: Path, tasks: list[str], space: dict = SMALL, seed: int = 0, network: dict | None = None, **transfer
):
    """A PPO strategy warm-started from ``source``, as a transfer search builds it."""
    config = strategy_config({"kind": "ppo", "controller": network or {}})
    search_space = SearchSpace.from_config(space)
    start = warm_start(
        TransferConfig.from_mapping({"from": str(source), **transfer}), config, search_space, tasks, seed
    )
    return make_strategy(config, search_space, tasks, seed, controller=start)


def body(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("task_embedding.") and torch.is_tensor(v)}


def transfer_run(run_dir: Path, cache: Path, source: Path, *overrides: str) -> list[dict]:
    tiny_run(
        run_dir, cache, "experiment=transfer", f"transfer.from={source}", "tasks=[mr]", "search.trials=8", *overrides
    )
    return read_trials(run_dir)


# --- the artifact -------------------------------------------------------------------


def test_a_search_saves_a_self_describing_controller(pretrained) -> None:
    raw = torch.load(pretrained / "controller.pt", map_location="cpu", weights_only=True)  # readable without mnms
    assert raw["task_names"] == PRETRAIN_TASKS and raw["task_embeddings"].shape == (2, 32)
    artifact = load_controller_artifact(pretrained)  # a run dir or the file itself
    assert artifact.path == load_controller_artifact(pretrained / "controller.pt").path == pretrained / "controller.pt"
    assert artifact.version == 1 and artifact.algorithm == "ppo"
    assert artifact.space.to_config() == SMALL and raw["space_signature"] == artifact.space.signature()
    assert artifact.run_config["tasks"] == PRETRAIN_TASKS and artifact.run_config["search"]["trials"] == 16
    controller = artifact.build_controller()
    assert torch.equal(controller.task_embedding.weight, raw["task_embeddings"])
    trained = load_checkpoint(pretrained)["strategy"]["controller"]  # the weights at the end of the search
    assert all(torch.equal(artifact.controller_state[k], v) for k, v in body(trained).items())


def test_random_search_saves_no_controller(data_dir, session_cache_dir, tmp_path) -> None:
    tiny_run(tmp_path, session_cache_dir, "experiment=random", "tasks=[trec]", "search.trials=4")
    assert (tmp_path / "trials.jsonl").exists() and not (tmp_path / "controller.pt").exists()
    with pytest.raises(FileNotFoundError, match="random/optuna search, which trains no controller"):
        load_controller_artifact(tmp_path)


# --- a transferred search -----------------------------------------------------------------


def test_transfer_search_starts_from_the_pretrained_controller(pretrained, session_cache_dir, tmp_path) -> None:
    rows = transfer_run(tmp_path, session_cache_dir, pretrained)
    assert [row.task for row in rows] == ["mr"] * 8 and all(row.status == "ok" for row in rows)
    after = load_controller_artifact(tmp_path)
    assert after.task_names == [*PRETRAIN_TASKS, "mr"]
    assert json.loads(RunDir(tmp_path).summary.read_text())["mode"] == "transfer"  # what the run is, not a label
    assert after.run_config["transfer"]["from"] == str(pretrained)
    # The first batch was proposed by the pre-trained weights (plus mr's new embedding).
    start = strategy_for(pretrained, ["mr"])
    log_probs, _ = start.controller.log_prob_and_entropy("mr", [row.decisions for row in rows[:4]])
    assert log_probs.tolist() == pytest.approx([row.log_prob for row in rows[:4]], abs=1e-5)
    before = load_controller_artifact(pretrained).controller_state
    assert any(not torch.equal(before[k], v) for k, v in body(after.controller_state).items())  # fine-tuned


def test_freeze_body_trains_only_the_new_embedding(pretrained, session_cache_dir, tmp_path) -> None:
    transfer_run(tmp_path, session_cache_dir, pretrained, "transfer.freeze_body=true")
    before, after = load_controller_artifact(pretrained), load_controller_artifact(tmp_path)
    for key, value in body(before.controller_state).items():
        assert torch.equal(after.controller_state[key], value), key
    assert torch.equal(after.task_embeddings[:2], before.task_embeddings)
    new = strategy_for(pretrained, ["mr"]).controller.task_embedding.weight[2]
    assert not torch.equal(after.task_embeddings[2], new)  # the new task's vector did learn


def test_new_embedding_init_options(pretrained) -> None:
    saved = load_controller_artifact(pretrained).task_embeddings

    def new_row(**options) -> torch.Tensor:
        return strategy_for(pretrained, ["mr", "trec"], **options).controller.task_embedding.weight[-1].detach()

    assert torch.allclose(new_row(init="mean"), saved.mean(dim=0))
    assert torch.equal(new_row(init="langid-tatoeba"), saved[1])
    assert torch.equal(new_row(init="random", seed=3), new_row(init="random", seed=3))
    assert not torch.equal(new_row(init="random", seed=3), new_row(init="random", seed=4))
    # A fresh vector is no copy of a pre-trained task's starting vector drawn with the same seed...
    pretrain_seed = load_controller_artifact(pretrained).run_config["seed"]
    started = TaskEmbedding(PRETRAIN_TASKS, saved.shape[1], torch.Generator().manual_seed(pretrain_seed)).weight
    fresh = new_row(init="random", seed=pretrain_seed)
    assert torch.nn.functional.cosine_similarity(started.detach(), fresh[None]).abs().max() < 0.8
    # ...and does not depend on the other new tasks added with it.
    alone = strategy_for(pretrained, ["trec", "mr"], init="random", seed=3).controller.task_embedding
    assert torch.equal(alone.weight[alone.index("mr")].detach(), new_row(init="random", seed=3))
    known = strategy_for(pretrained, ["mr", "trec"]).controller.task_embedding
    assert known.names == [*PRETRAIN_TASKS, "mr"] and torch.equal(known.weight[0].detach(), saved[0])
    with pytest.raises(ValueError, match=r"transfer.init='sst2' is neither .* pre-trained tasks are \['trec'"):
        strategy_for(pretrained, ["mr"], init="sst2")


def test_a_resumed_transfer_search_continues_exactly(pretrained, session_cache_dir, tmp_path) -> None:
    # An extended search repeats the longer one when the shorter ended on a step boundary; on
    # this 8-architecture space a redraw step can fall short of the batch, so repeats are reused.
    reuse = "search.repeats=reuse"
    reference = transfer_run(tmp_path / "reference", session_cache_dir, pretrained, "search.trials=16", reuse)
    assert len(transfer_run(tmp_path / "resumed", session_cache_dir, pretrained, reuse)) == 8
    tiny_run(
        tmp_path / "ignored",
        session_cache_dir,
        "experiment=transfer",
        f"transfer.from={pretrained}",
        "tasks=[mr]",
        "search.trials=16",
        reuse,
        f"resume={tmp_path / 'resumed'}",
    )
    assert comparable(read_trials(tmp_path / "resumed")) == comparable(reference)


# --- refusals --------------------------------------------------------------------------


def replace(decision: int, **changes) -> dict:
    decisions = [dict(d) for d in SMALL["decisions"]]
    decisions[decision].update(changes)
    return {"decisions": decisions}


@pytest.mark.parametrize(
    "space, message",
    [
        (replace(0, choices=["words", "char-ngrams", "minilm"]), r"decision 'encoder' .* \(adds \['minilm'\]\)"),
        (replace(0, choices=["words"]), r"decision 'encoder' .* \(this run lacks \['char-ngrams'\]\)"),
        (replace(0, choices=["char-ngrams", "words"]), r"decision 'encoder' .*\(same choices in another order\)"),
        (replace(3, choices=[0.001, 0.003]), r"'learning_rate' .* lacks \[0.01\] and adds \[0.003\]"),
        (
            replace(2, when={"hidden_layers": [0, 1]}),
            r"decision 'width_1' is decided when \{'hidden_layers': \[1\]\} there "
            r"but when \{'hidden_layers': \[0, 1\]\}",
        ),
        (
            {"decisions": SMALL["decisions"][:2] + SMALL["decisions"][3:]},
            r"the decisions differ: this run lacks \['width_1'\]\.",
        ),
        (
            {"decisions": [SMALL["decisions"][1], SMALL["decisions"][0], *SMALL["decisions"][2:]]},
            r"decision #0 is 'encoder' there but 'hidden_layers' here",
        ),
    ],
)
def test_a_mismatched_space_is_refused_naming_the_decision(pretrained, space, message) -> None:
    with pytest.raises(ValueError, match=message):
        strategy_for(pretrained, ["mr"], space=space)


def test_mismatches_are_refused_before_anything_trains(pretrained, session_cache_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"'encoder' .*\(adds \['minilm'\]\)"):
        transfer_run(
            tmp_path, session_cache_dir, pretrained, "search_space.decisions.0.choices=[words,char-ngrams,minilm]"
        )
    assert not (tmp_path / "trials.jsonl").exists()
    with pytest.raises(ValueError, match="has hidden_size=64 but this run's strategy.controller.hidden_size=32"):
        strategy_for(pretrained, ["mr"], network={"hidden_size": 32})
    with pytest.raises(ValueError, match=r"strategy=random trains no controller, .* use one of \['ppo', 'reinforce'\]"):
        warm_start(
            TransferConfig.from_mapping({"from": str(pretrained)}),
            strategy_config({"kind": "random"}),
            SearchSpace.from_config(SMALL),
            ["mr"],
            0,
        )
    with pytest.raises(ValueError, match="key is 'from'"):
        TransferConfig.from_mapping({"source": "x"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['transfer.init_from'\]"):
        TransferConfig.from_mapping({"from": "x", "init_from": "mean"})
    with pytest.raises(FileNotFoundError, match="set transfer.from to a search run dir"):
        tiny_run(tmp_path, session_cache_dir, "experiment=transfer", "tasks=[mr]")


@pytest.mark.slow
def test_train_py_transfer_then_propose(pretrained, session_cache_dir, tmp_path) -> None:
    """The README's commands, end to end through train.py."""
    common = [f"paths.cache_dir={session_cache_dir}", f"transfer.from={pretrained}"]
    search = subprocess.run(
        [
            sys.executable,
            "train.py",
            "experiment=transfer",
            "tasks=[mr]",
            "search.trials=8",
            *tiny(),
            *common,
            f"hydra.run.dir={tmp_path / 'transfer'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    assert {row.task for row in read_trials(tmp_path / "transfer")} == {"mr"}
    assert (tmp_path / "transfer" / "controller.pt").exists() and "controller for transfer" in search.stdout
    propose = subprocess.run(
        [
            sys.executable,
            "train.py",
            "mode=propose",
            "task=mr",
            "propose.k=3",
            *tiny("mode=propose"),
            *common,
            f"hydra.run.dir={tmp_path / 'propose'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert propose.returncode == 0, propose.stderr[-3000:]
    assert "beam proposals for mr" in propose.stdout and (tmp_path / "propose" / "proposals.json").exists()
