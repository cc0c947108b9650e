"""search.cost: a child's counted compute shapes the controller's reward (MnasNet's and TuNAS's rules),
against a per-task target, reproducibly; and the settings are checked before anything trains."""

from __future__ import annotations

import json
import statistics

import pytest
from test_search import comparable

from helpers.tiny_search import tiny_run
from mnms.executors.trial import OK, TrialOutcome
from mnms.search.cost import CostConfig, CostReward, cost_of
from mnms.search.records import read_trials
from mnms.utils.config import ConfigError, from_config


def outcome(flops: float, accuracy: float = 0.8) -> TrialOutcome:
    return TrialOutcome(OK, {"val_accuracy": accuracy, "flops": flops, "train_seconds": 1.0})


def test_mnas_and_abs_shape_the_score_by_the_cost_against_the_tasks_target() -> None:
    mnas = CostReward(CostConfig(shape="mnas", target=1e9))
    assert mnas.shaped("t", 0.8, outcome(2e9).metrics) == pytest.approx(0.8 * 2**-0.07)  # twice T: about -5%
    assert mnas.shaped("t", 0.8, outcome(0.5e9).metrics) > 0.8  # cheaper than T gains
    absolute = CostReward(CostConfig(shape="abs", weight=-0.2, target=1e9))
    assert absolute.shaped("t", 0.8, outcome(1.5e9).metrics) == pytest.approx(0.8 - 0.2 * 0.5)
    assert absolute.shaped("t", 0.8, outcome(0.5e9).metrics) == pytest.approx(0.8 - 0.2 * 0.5)  # both sides
    assert CostReward(CostConfig()).shaped("t", 0.8, outcome(9e9).metrics) == 0.8  # none: the paper's reward


def test_a_derived_target_is_the_median_of_each_tasks_first_finished_children() -> None:
    reward = CostReward(CostConfig(shape="mnas", target_children=3))
    assert reward.target("t") is None
    for trial, flops in enumerate([4e9, 1e9, 2e9, 100e9]):  # the fourth child is past target_children
        reward.feed(trial, "t", outcome(flops))
    reward.feed(1, "t", outcome(50e9))  # a trial fed again (a resumed search) counts once
    reward.feed(9, "t", TrialOutcome("failed", {}))  # and one that did not finish not at all
    assert reward.target("t") == statistics.median([4e9, 1e9, 2e9]) and reward.target("u") is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shape": "mnsa"}, r"search.cost.shape='mnsa' must be one of \['none', 'mnas', 'abs'\]"),
        ({"shape": "mnas", "weight": 0.07}, r"search.cost.weight=0.07 must be null .* a number in \[-1, 0\)"),
        ({"shape": "abs", "target": 0}, r"search.cost.target=0 must be null .* or a positive number of flops"),
        ({"target_children": 0}, r"search.cost.target_children=0 must be an integer >= 1"),
        ({"measure": "watts"}, r"search.cost.measure='watts' must be one of \['flops', 'seconds'\]"),
    ],
)
def test_a_bad_cost_setting_is_named_with_its_valid_range(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_config(CostConfig, settings)


def test_a_record_without_the_cost_names_the_setting_and_the_measure_that_works() -> None:
    with pytest.raises(ValueError, match=r"search.cost.measure=flops but a child's result has no flops .*=seconds"):
        cost_of({"train_seconds": 3.0}, "flops")


@pytest.mark.slow
def test_a_cost_aware_search_rewards_cheap_children_keeps_their_scores_and_resumes_exactly(
    session_cache_dir, tmp_path
) -> None:
    search = ("tasks=[trec]", "search.cost.shape=mnas", "search.repeats=reuse", "seed=2")
    tiny_run(tmp_path / "reference", session_cache_dir, *search, "search.trials=8")
    rows = read_trials(tmp_path / "reference")
    trained = [row for row in rows if row.status == OK and row.reused_from is None]
    target = statistics.median(row.metrics["flops"] for row in trained[:8])
    summary = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert summary["cost_target"] == {"trec": target}
    last = trained[-1]  # every child of the task has fed the target by the last one
    expected = last.metrics["val_accuracy"] * (last.metrics["flops"] / target) ** -0.07
    assert last.reward == pytest.approx(expected) and last.reward != last.metrics["val_accuracy"]
    tiny_run(tmp_path / "run", session_cache_dir, *search, "search.trials=4")
    tiny_run(tmp_path / "ignored", session_cache_dir, f"resume={tmp_path / 'run'}", "search.trials=8")
    assert comparable(read_trials(tmp_path / "run")) == comparable(rows)
    refused = pytest.raises(ConfigError, match=r"its search.cost.shape is 'mnas', this run's is 'abs'")
    with refused:
        tiny_run(tmp_path / "ignored", session_cache_dir, f"resume={tmp_path / 'run'}", "search.cost.shape=abs")


def test_children_cut_by_the_time_limit_are_counted_per_task(session_cache_dir, tmp_path) -> None:
    budget = ("trainer.time_limit_s=0.3", "trainer.max_epochs=100000", "trainer.patience=null")
    tiny_run(tmp_path / "run", session_cache_dir, "tasks=[trec]", "search.trials=4", "search.batch_size=4", *budget)
    rows = read_trials(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cut = [row for row in rows if row.reused_from is None and row.metrics.get("stopped_by") == "time_limit"]
    assert len(cut) == summary["distinct"]["trec"] > 0  # every child trained ran into the limit
    assert summary["capped"] == {"trec": len(cut)}
