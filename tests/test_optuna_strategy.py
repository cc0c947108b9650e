"""The Optuna TPE baseline: valid define-by-run proposals, learning, per-task studies, exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from omegaconf import OmegaConf
from test_search import comparable

from helpers.configs import default_strategy, shipped_strategy
from helpers.tiny_search import CONF, tiny_run
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import Strategy, strategy_config
from mnms.search.strategies.base import Proposal
from mnms.search.strategies.optuna import OptunaStrategy

DEFAULT = SearchSpace.from_config(OmegaConf.to_container(OmegaConf.load(CONF / "search_space" / "default.yaml")))
BATCH = 8
# The optimum of a synthetic task: reward is the fraction of these decisions the architecture gets right.
TARGET = {"encoder": "char-ngrams", "optimizer": "rmsprop", "learning_rate": 0.003, "dropout": 0.3, "batch_size": 32}


def optuna_strategy(tasks: list[str], seed: int = 0) -> Strategy:
    """Built exactly as the search does: from the shipped conf/strategy/optuna.yaml."""
    return shipped_strategy("optuna", DEFAULT, tasks, seed)


def reward(arch: dict) -> float:
    return sum(arch[name] == value for name, value in TARGET.items()) / len(TARGET)


def run_steps(strategy: Strategy, task: str, steps: int) -> list[dict]:
    archs = []
    for _ in range(steps):
        proposals = strategy.propose(task, BATCH)
        strategy.observe(task, proposals, [reward(p.arch) for p in proposals])
        archs += [p.arch for p in proposals]
    return archs


def test_config_comes_from_the_strategy_group_and_unknown_keys_are_errors() -> None:
    assert isinstance(optuna_strategy(["a"]), OptunaStrategy) and optuna_strategy(["a"]).name == "optuna"
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['strategy.n_startup'\]"):
        strategy_config({"kind": "optuna", "n_startup": 5})
    with pytest.raises(ValueError, match="group=true needs strategy.multivariate=true"):
        strategy_config({"kind": "optuna", "multivariate": False})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['strategy.controller'\]"):
        strategy_config({"kind": "optuna", "controller": {"hidden_size": 8}})


def test_proposals_are_valid_and_only_active_decisions_are_suggested() -> None:
    strategy = optuna_strategy(["a"])
    archs = run_steps(strategy, "a", 5)
    assert all(DEFAULT.is_valid(arch) for arch in archs)
    study = strategy.studies["a"]
    assert [trial.params for trial in study.trials] == archs  # nothing beyond the active decisions was asked
    assert any("width_3" not in arch for arch in archs) and any("width_3" in arch for arch in archs)
    probabilities = strategy.choice_probabilities("a")
    assert all(sum(p.values()) == pytest.approx(1.0) for p in probabilities.values())


def test_tpe_learns_a_synthetic_reward_better_than_random_search() -> None:
    tpe = [reward(arch) for arch in run_steps(optuna_strategy(["a"]), "a", 8)]
    rand = [reward(arch) for arch in run_steps(default_strategy("random", DEFAULT, ["a"]), "a", 8)]
    late_tpe, late_random = sum(tpe[32:]) / 32, sum(rand[32:]) / 32
    assert late_tpe > late_random + 0.15, (late_tpe, late_random)
    assert max(tpe) >= max(rand)


def test_tasks_have_independent_studies() -> None:
    alone = run_steps(optuna_strategy(["b"]), "b", 3)
    together = optuna_strategy(["a", "b"])
    run_steps(together, "a", 3)
    assert run_steps(together, "b", 3) == alone  # a's trials neither inform nor perturb b's
    with pytest.raises(KeyError, match="unknown task 'c'"):
        together.propose("c", 1)


def test_a_restored_strategy_proposes_exactly_what_the_original_would() -> None:
    original = optuna_strategy(["a", "b"], seed=3)
    run_steps(original, "a", 3)  # past the 10 random startup trials: TPE is modelling
    run_steps(original, "b", 1)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # as the search's checkpoint does
    buffer.seek(0)
    restored = optuna_strategy(["a", "b"], seed=3)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    for task in ("a", "b", "a"):
        assert run_steps(restored, task, 2) == run_steps(original, task, 2)


def test_an_optuna_search_resumes_exactly_and_saves_no_controller(data_dir, session_cache_dir, tmp_path) -> None:
    common = ("strategy=optuna", "tasks=[trec,langid-tatoeba]", "strategy.n_startup_trials=4")
    tiny_run(tmp_path / "reference", session_cache_dir, *common, "search.trials=24")
    tiny_run(tmp_path / "resumed", session_cache_dir, *common, "search.trials=12")
    tiny_run(tmp_path / "ignored", session_cache_dir, *common, "search.trials=24", f"resume={tmp_path / 'resumed'}")
    reference = read_trials(tmp_path / "reference")
    assert len(reference) == 24 and all(row.status == "ok" for row in reference)
    assert comparable(read_trials(tmp_path / "resumed")) == comparable(reference)
    assert not (tmp_path / "reference" / "controller.pt").exists()


def test_observe_must_follow_propose() -> None:
    strategy = optuna_strategy(["a"])
    proposals = strategy.propose("a", 2)
    extra = strategy.propose("a", 1)  # a step may draw in several calls (redrawn repeats)
    with pytest.raises(RuntimeError, match="between propose\\(\\) and observe\\(\\)"):
        strategy.state_dict()
    strategy.discard("a", extra)
    with pytest.raises(ValueError, match="not pending"):  # an equal copy is not the proposal
        strategy.observe("a", [Proposal(dict(proposals[0].arch), 0.0), proposals[1]], [0.5, 0.4])
    with pytest.raises(ValueError, match="would still be pending after observe"):
        strategy.observe("a", proposals[:1], [0.5])
    strategy.observe("a", proposals, [0.5, 0.4])
    study = strategy.studies["a"]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]  # the discarded one teaches nothing
    assert len(strategy.propose("a", 1)) == 1
