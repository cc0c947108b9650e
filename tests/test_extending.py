"""CONTRIBUTING.md's three recipes, followed for real: a new strategy, executor and encoder each need one
module, one registry line and one YAML file -- nothing else in mnms learns their names.

Each test writes its class here (the "module"), adds it to the registry as the one new
line would (``monkeypatch``), puts its YAML into a config folder of its own that Hydra
searches too (``hydra.searchpath``), and runs a real tiny search through ``train.py``'s
composition and ``mnms.app.run``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from helpers.tiny_search import tiny_run
from mnms.data import encoders
from mnms.data.encoders.base import DenseInput, EncodedTask, Encoder, cached
from mnms.executors import EXECUTORS
from mnms.executors.base import Executor, Runner
from mnms.executors.trial import TrialOutcome, TrialRequest
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import STRATEGIES
from mnms.search.strategies.base import Proposal, Strategy
from mnms.utils.registry import Registry


def register(monkeypatch: pytest.MonkeyPatch, registry: Registry, name: str, cls: type) -> None:
    """What the new registry line does, undone after the test: the registry knows ``cls`` and names it."""
    monkeypatch.setitem(registry._classes, name, cls)
    monkeypatch.setattr(cls, "name", name, raising=False)


def plugin_conf(tmp_path: Path, group: str, name: str, schema: str) -> str:
    """A config folder holding ``<group>/<name>.yaml`` (the recipe's YAML file); returns the searchpath override."""
    folder = tmp_path / "plugin-conf"
    (folder / group).mkdir(parents=True)
    (folder / group / f"{name}.yaml").write_text(f"defaults:\n  - {schema}\n")
    return f"hydra.searchpath=[file://{folder}]"


@dataclass(frozen=True)
class FirstChoiceConfig:
    section: ClassVar[str] = "strategy"

    kind: str
    batch_share: float = 1.0  # a setting of its own, to show it reaches the config


class FirstChoiceStrategy(Strategy):
    """Always the first choice of every active decision."""

    Config = FirstChoiceConfig
    asynchronous = True

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @classmethod
    def build(cls, config: FirstChoiceConfig, space: SearchSpace, tasks: Sequence[str], seed: int) -> Strategy:
        return cls(space)

    def propose(self, task: str, n: int) -> list[Proposal]:
        arch: dict[str, Any] = {}
        for decision in self.space.decisions:
            if decision.active(arch):
                arch[decision.name] = decision.choices[0]
        return [Proposal(dict(arch), 0.0) for _ in range(n)]

    def observe(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        return {}

    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        return {d.name: {str(c): float(i == 0) for i, c in enumerate(d.choices)} for d in self.space.decisions}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_a_new_strategy(data_dir, session_cache_dir, tmp_path, monkeypatch) -> None:
    register(monkeypatch, STRATEGIES, "first", FirstChoiceStrategy)
    searchpath = plugin_conf(tmp_path, "strategy", "first", "/schema/strategy/first@_here_")
    cfg, _ = tiny_run(
        tmp_path / "run",
        session_cache_dir,
        searchpath,
        "strategy=first",
        "strategy.batch_share=0.5",
        "tasks=[trec]",
        "search.trials=4",
    )
    assert cfg.strategy.batch_share == 0.5
    rows = read_trials(tmp_path / "run")
    assert [row.decisions for row in rows] == [{"encoder": "words", "hidden_layers": 0, "learning_rate": 0.001}] * 4


@dataclass(frozen=True)
class BackwardsConfig:
    section: ClassVar[str] = "executor"

    kind: str


class BackwardsExecutor(Executor):
    """Trains the child submitted last first, in this process; the search still records request order."""

    Config = BackwardsConfig

    def __init__(self, runner: Runner, config: BackwardsConfig) -> None:
        super().__init__()
        self.runner = runner
        self.submitted: list[TrialRequest] = []

    @property
    def in_flight(self) -> int:
        return len(self.submitted)

    def _submit(self, request: TrialRequest) -> None:
        self.submitted.append(request)

    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        request = self.submitted.pop()
        return [(request, self.runner(request))]


def test_a_new_executor(data_dir, session_cache_dir, tmp_path, monkeypatch) -> None:
    register(monkeypatch, EXECUTORS, "backwards", BackwardsExecutor)
    searchpath = plugin_conf(tmp_path, "executor", "backwards", "/schema/executor/backwards@_here_")
    common = ("tasks=[trec]", "search.trials=4", "search.reuse_rewards=false", "seed=5")
    tiny_run(tmp_path / "sequential", session_cache_dir, *common)
    tiny_run(tmp_path / "backwards", session_cache_dir, searchpath, "executor=backwards", *common)
    sequential, backwards = read_trials(tmp_path / "sequential"), read_trials(tmp_path / "backwards")
    assert [(r.arch, r.metrics["val_accuracy"]) for r in backwards] == [
        (r.arch, r.metrics["val_accuracy"]) for r in sequential
    ]
    # And in async mode it trains every child once, numbered in the order they finished.
    tiny_run(tmp_path / "async", session_cache_dir, searchpath, "executor=backwards", "search.mode=async", *common)
    asynchronous = read_trials(tmp_path / "async")
    assert sorted(json.dumps(r.arch, sort_keys=True) for r in asynchronous) == sorted(
        json.dumps(r.arch, sort_keys=True) for r in sequential
    )


class LengthEncoder(Encoder):
    """Two dense features per text: its length in characters and in words, times ``scale``."""

    defaults = {"scale": 0.01}  # scale: what both counts are multiplied by

    def encode(self, task: Any, *, fine_tune: bool, pooling: str, cache: Any) -> EncodedTask:
        def features(texts: Sequence[str]) -> dict[str, torch.Tensor]:
            counts = [[len(text), len(text.split())] for text in texts]
            return {"x": torch.tensor(counts, dtype=torch.float32) * self.options["scale"]}

        splits = {}
        for split, data in task.splits.items():
            entry, _ = cached(
                cache,
                self.cache_key("lengths", {"texts": task.fingerprint(split)}),
                lambda data=data: features(data.texts),
            )
            splits[split] = entry
        return EncodedTask(splits=splits, dim=2, make_input_layer=DenseInput, from_cache=False)


def test_a_new_encoder(data_dir, session_cache_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(encoders.ENCODERS, "lengths", LengthEncoder)
    # Its YAML is the search space that offers it (conf/search_space/default.yaml gains a choice); the
    # encoders section gets its options from the class.
    cfg, _ = tiny_run(
        tmp_path / "run",
        session_cache_dir,
        "search_space.decisions.0.choices=[lengths,words]",
        "encoders.lengths.scale=0.1",
        "tasks=[trec]",
        "search.trials=8",
        "strategy=random",
    )
    assert cfg.encoders.lengths.scale == 0.1
    rows = read_trials(tmp_path / "run")
    assert "lengths" in {row.arch["encoder"] for row in rows} and all(row.status == "ok" for row in rows)
