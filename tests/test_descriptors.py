"""Task descriptors: computed from real tasks' data, projected into the controller's task-embedding space,
carried by a pre-trained controller and used to start a new task (``transfer.init=descriptor``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_transfer import SMALL
from torch.nn.functional import cosine_similarity

import bench.transfer_prior as transfer_prior
from helpers.configs import compose_config
from helpers.tiny_search import PRETRAIN_TASKS, pretrained, tiny_run  # noqa: F401 - fixture
from mnms.app.common import task_descriptor
from mnms.data.descriptor import DESCRIPTOR_SIZE, DescriptorError, describe_task
from mnms.data.encoders import get_encoder
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Split, Task, load_task
from mnms.search.controller import Controller, ControllerConfig
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import make_strategy, strategy_config
from mnms.search.task_embedding import TaskEmbedding
from mnms.transfer.artifact import load_controller_artifact
from mnms.transfer.warm_start import TransferConfig, warm_start
from mnms.utils.config import ConfigError

QUIET = {"minilm": {"progress": False}}


RELATED = ["sst2", "mr", "trec", "langid-tatoeba", "is-spanish", "french-allocine-tv"]


class Described(dict):
    """Real tasks' descriptors, each computed the first time a test asks for it."""

    def __init__(self, data_dir: Path, cache: FeatureCache) -> None:
        super().__init__()
        self.data_dir, self.cache = data_dir, cache

    def __missing__(self, name: str) -> torch.Tensor:
        self[name] = describe_task(load_task(name, self.data_dir), self.cache, QUIET)
        return self[name]


@pytest.fixture(scope="module")
def descriptors(data_dir: Path, session_cache_dir: Path) -> Described:
    return Described(data_dir, FeatureCache(session_cache_dir))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(cosine_similarity(a[None], b[None])[0])


@pytest.mark.slow
def test_descriptors_of_real_tasks_place_related_tasks_together(descriptors) -> None:
    d = {name: descriptors[name] for name in RELATED}
    assert all(v.shape == (DESCRIPTOR_SIZE,) and torch.isfinite(v).all() for v in d.values())
    # Movie-review sentiment (mr, sst2) and Tatoeba sentences (langid-tatoeba, is-spanish) are each other's nearest.
    for task, relative in [("mr", "sst2"), ("is-spanish", "langid-tatoeba")]:
        others = {name: cosine(d[task], v) for name, v in d.items() if name != task}
        assert max(others, key=others.get) == relative, others
    assert cosine(d["mr"], d["sst2"]) > cosine(d["mr"], d["french-allocine-tv"]) + 0.1


def test_a_descriptor_is_cached_and_ignores_the_runs_seed_and_cap(data_dir, session_cache_dir) -> None:
    first = describe_task(load_task("trec", data_dir), FeatureCache(session_cache_dir), QUIET)
    encoder = get_encoder("minilm", QUIET)
    uses = encoder.model_uses
    again = describe_task(load_task("trec", data_dir), FeatureCache(session_cache_dir), QUIET)
    assert torch.equal(again, first) and encoder.model_uses == uses  # no model run
    cfg = compose_config(f"paths.cache_dir={session_cache_dir}", "max_examples=50", "seed=7")
    assert torch.equal(task_descriptor(cfg, "trec"), first)  # the whole task, not the run's proxy


def hand_task(texts: list[str], labels: list[int], classes: tuple[str, ...] = ("neg", "pos")) -> Task:
    empty = Split((), np.zeros(0, np.int64))
    return Task(
        "hand", "en", classes, {"train": Split(tuple(texts), np.array(labels)), "validation": empty, "test": empty}
    )


def test_an_empty_or_single_class_sample_is_refused(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(DescriptorError, match=r"task 'hand' has no training texts.*transfer.init=random"):
        describe_task(hand_task([], []), cache)
    with pytest.raises(
        DescriptorError, match=r"the 256 training texts sampled .* all have the label 'pos'.*at least two"
    ):
        describe_task(hand_task(["fine"] * 300, [1] * 300), cache)


def test_descriptor_table_starts_as_the_projection_and_adds_tasks(descriptors) -> None:
    names = ["sst2", "langid-tatoeba"]
    torch.manual_seed(0)
    table = TaskEmbedding(names, 32, descriptors={n: descriptors[n] for n in names})
    vectors = table.vectors().detach()
    assert torch.equal(table.weight, torch.zeros(2, 32))  # residuals start at zero
    assert torch.allclose(vectors, table.projection(torch.stack([descriptors[n] for n in names])).detach())
    assert 0.3 < vectors.std() < 3  # on the scale of the paper's unit-variance free rows
    table.add_task("mr", "descriptor", descriptor=descriptors["mr"])
    table.add_task("trec", "random", generator=torch.Generator().manual_seed(1))
    mr, trec = table(["mr"])[0].detach(), table(["trec"])[0].detach()
    assert cosine(mr, vectors[0]) > cosine(mr, vectors[1])  # mr starts nearer sst2 than langid-tatoeba
    assert torch.equal(trec, torch.randn(32, generator=torch.Generator().manual_seed(1)))  # no descriptor part
    copy = TaskEmbedding(names, 32, descriptors={n: descriptors[n] for n in names})
    copy.add_task("mr", "descriptor", descriptor=descriptors["mr"])
    copy.add_task("trec", "random")
    copy.load_state_dict(table.state_dict())
    assert torch.equal(copy.vectors(), table.vectors())
    free = TaskEmbedding(names, 32)
    with pytest.raises(ValueError, match="trained without descriptors"):
        free.add_task("mr", "descriptor", descriptor=descriptors["mr"])
    with pytest.raises(ValueError, match=r"no descriptor for tasks \['langid-tatoeba'\]"):
        TaskEmbedding(names, 32, descriptors={"sst2": descriptors["sst2"]})


def test_the_controller_needs_descriptors_exactly_when_configured(descriptors) -> None:
    space = SearchSpace.from_config(SMALL)
    with pytest.raises(ValueError, match="task_descriptors=true needs a descriptor per task"):
        Controller(space, ["sst2"], ControllerConfig(task_descriptors=True))
    with pytest.raises(ValueError, match="task_descriptors=False, descriptors given"):
        Controller(space, ["sst2"], ControllerConfig(), descriptors={"sst2": descriptors["sst2"]})


@pytest.fixture(scope="module")
def pretrained_with_descriptors(data_dir: Path, session_cache_dir: Path, tmp_path_factory) -> Path:
    """A real 16-trial multitask PPO search whose task vectors are projected descriptors."""
    run_dir = tmp_path_factory.mktemp("pretrained-descriptors")
    tiny_run(
        run_dir,
        session_cache_dir,
        f"tasks=[{','.join(PRETRAIN_TASKS)}]",
        "search.trials=16",
        "strategy.controller.task_descriptors=true",
        "strategy.policy.embedding_learning_rate=0.05",
    )
    return run_dir


def describer(data_dir: Path, cache_dir: Path):
    return lambda name: describe_task(load_task(name, data_dir), FeatureCache(cache_dir), QUIET)


def warm(source: Path, describe, **transfer):
    config = strategy_config({"kind": "ppo"})
    space = SearchSpace.from_config(SMALL)
    start = warm_start(
        TransferConfig.from_mapping({"from": str(source), **transfer}), config, space, ["mr"], 0, describe
    )
    return make_strategy(config, space, ["mr"], 0, controller=start)


def test_pretraining_learns_the_projection_and_transfer_projects_a_new_task(
    pretrained_with_descriptors, data_dir, session_cache_dir
) -> None:
    artifact = load_controller_artifact(pretrained_with_descriptors)
    assert artifact.descriptor["version"] == 1 and artifact.descriptor["size"] == DESCRIPTOR_SIZE
    describe = describer(data_dir, session_cache_dir)
    assert torch.equal(artifact.task_descriptors, torch.stack([describe(t) for t in PRETRAIN_TASKS]))
    controller = artifact.build_controller()
    # The saved vectors are projection + residual, and the search trained the projection away from its start.
    assert torch.allclose(artifact.task_embeddings, controller.task_embedding.vectors().detach())
    with torch.random.fork_rng():
        torch.manual_seed(artifact.run_config["seed"])
        fresh = Controller(
            controller.space, PRETRAIN_TASKS, controller.cfg, dict(zip(PRETRAIN_TASKS, artifact.task_descriptors))
        )
    assert not torch.equal(fresh.task_embedding.projection.weight, controller.task_embedding.projection.weight)

    strategy = warm(pretrained_with_descriptors, describe, init="descriptor")
    embedding = strategy.controller.task_embedding
    expected = controller.task_embedding.projection(describe("mr")).detach()
    assert embedding.names == [*PRETRAIN_TASKS, "mr"] and torch.allclose(embedding(["mr"])[0].detach(), expected)
    random_start = warm(pretrained_with_descriptors, describe, init="random").controller.task_embedding
    assert not bool(random_start.described[-1])  # the paper's random vector, no descriptor part


def test_descriptor_init_needs_a_controller_pretrained_with_descriptors(
    pretrained, data_dir, session_cache_dir
) -> None:
    describe = describer(data_dir, session_cache_dir)
    how_to = r"experiment=pretrain.*task_descriptors=true.*transfer.init=random"
    with pytest.raises(
        ConfigError, match=r"transfer.init=descriptor: .* pre-trained without task descriptors.*" + how_to
    ):
        warm(pretrained, describe, init="descriptor")
    config = strategy_config({"kind": "ppo", "controller": {"task_descriptors": True}})
    with pytest.raises(ConfigError, match=r"task_descriptors=true, but transfer.from=.* without task descriptors"):
        warm_start(
            TransferConfig.from_mapping({"from": str(pretrained)}), config, SearchSpace.from_config(SMALL), ["mr"], 0
        )


def test_a_transfer_search_and_propose_start_from_the_descriptor(
    pretrained_with_descriptors, session_cache_dir, tmp_path
) -> None:
    source = f"transfer.from={pretrained_with_descriptors}"
    tiny_run(
        tmp_path / "t",
        session_cache_dir,
        "experiment=transfer",
        source,
        "tasks=[mr]",
        "search.trials=8",
        "transfer.init=descriptor",
    )
    after = load_controller_artifact(tmp_path / "t")
    assert after.task_names == [*PRETRAIN_TASKS, "mr"] and after.descriptor is not None
    assert torch.equal(
        after.task_descriptors[-1], task_descriptor(compose_config(f"paths.cache_dir={session_cache_dir}"), "mr")
    )
    tiny_run(
        tmp_path / "p", session_cache_dir, "mode=propose", "task=mr", "propose.k=2", source, "transfer.init=descriptor"
    )
    proposals = json.loads((tmp_path / "p" / "proposals.json").read_text())
    assert proposals["embedding"] == "new, transfer.init=descriptor" and len(proposals["proposals"]) == 2


def test_transfer_prior_reports_cost_prior_and_where_held_out_tasks_start(
    pretrained_with_descriptors, tmp_path, monkeypatch
) -> None:
    """bench.transfer_prior on a real pretraining run: its children, its prior per task, and
    each held-out task's descriptor-initialised embedding next to its relative."""
    monkeypatch.setattr(transfer_prior, "RESULTS", tmp_path / "prior.json")
    figure = tmp_path / "similarity.png"
    argv = ["transfer_prior", str(pretrained_with_descriptors), "--held-out", "mr", "is-spanish"]
    argv += ["--figure", str(figure)]
    monkeypatch.setattr("sys.argv", argv)
    transfer_prior.main()
    result = json.loads((tmp_path / "prior.json").read_text())
    trials = read_trials(pretrained_with_descriptors)
    assert result["task_descriptors"] and result["cost"]["children"] == len(trials) == 16
    assert result["cost"]["child_wall_seconds"] == pytest.approx(sum(t.wall_seconds for t in trials), abs=0.1)
    assert set(result["prior"]) == set(PRETRAIN_TASKS)
    for task in PRETRAIN_TASKS:
        assert 0 < result["prior"][task]["top_encoder_probability"] <= 1
    nearest = result["similarity"]["nearest"]
    assert nearest["is-spanish"][0][0] == "langid-tatoeba" and nearest["mr"][0][0] == "trec"
    assert all(name in PRETRAIN_TASKS for name, _ in nearest["mr"])  # neighbours are pretrained tasks only
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the same vectors, drawn
