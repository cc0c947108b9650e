"""Pruning: the bars a pruner sets from earlier curves, a real child stopping at one, real pruned searches."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_reliability import train_py
from test_search import comparable

from helpers.tiny_search import tiny_run
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.stopping import stops_after
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task
from mnms.executors.trial import TrialOutcome
from mnms.search.config import SearchConfig
from mnms.search.pruning import Curve, Pruner, curve_of, rungs
from mnms.search.records import read_trials
from mnms.utils.config import ConfigError, from_config
from mnms.utils.io import RunDir


def pruner(kind: str, **settings: int) -> Pruner:
    """The pruner ``search.pruner=kind`` with ``search.pruner_<setting>`` for each of ``settings``."""
    return SearchConfig(pruner=kind, **{f"pruner_{key}": value for key, value in settings.items()}).pruning


# Every child trains (no reuse of an identical architecture) for up to 4 epochs; asha
# keeps the top half at epochs 1 and 2 once two trials of the task reached them.
PRUNED = (
    "tasks=[trec]",
    "search.trials=12",
    "trainer.max_epochs=4",
    "trainer.patience=null",
    "search.reuse_rewards=false",
    "search.pruner=asha",
    "search.pruner_startup_trials=2",
    "search.pruner_reduction_factor=2",
)


def test_median_bars_are_the_median_of_finished_trials_best_so_far() -> None:
    curves = [
        Curve([0.5, 0.6, 0.7], finished=True),
        Curve([0.3, 0.2], finished=True),  # stopped early: holds its best, 0.3, at epoch 3
        Curve([0.9, 0.95, 0.96], finished=True),
        Curve([0.1], finished=False),  # pruned: the median counts finished trials only
    ]
    bars = pruner("median", startup_trials=3, warmup_epochs=2).bars(curves)
    assert bars == {2: 0.6, 3: 0.7}
    assert pruner("median", startup_trials=4).bars(curves) == {}  # three finished trials are too few


def test_asha_bars_keep_the_top_fraction_of_each_rung_pruned_trials_included() -> None:
    assert rungs(1, 3, 10) == [1, 3, 9] and rungs(2, 2, 9) == [2, 4, 8]
    curves = [Curve([a], finished=False) for a in (0.1, 0.2, 0.3)] + [Curve([0.4, 0.5, 0.8], finished=True)]
    bars = pruner("asha", startup_trials=2, min_epochs=1, reduction_factor=2).bars(curves)
    # rung 1: all four reached it, median 0.25; rung 2: only the finished one, too few.
    assert bars == pytest.approx({1: 0.25})
    assert pruner("none").bars(curves) == {}


def test_a_record_gives_a_curve_only_when_it_trained() -> None:
    def curve(status: str, **metrics) -> Curve | None:
        return curve_of(TrialOutcome(status, metrics))

    assert curve("failed") is None
    assert curve("ok", val_accuracy=0.5) is None  # a record older than pruning
    assert curve("pruned", val_curve=[0.2]) == Curve([0.2], finished=False)
    assert curve("ok", val_curve=[0.2], stopped_by="early_stopping") == Curve([0.2], finished=True)
    # Out of time is not converged: its best could still have grown, so it holds no later epoch.
    assert curve("ok", val_curve=[0.2], stopped_by="time_limit") == Curve([0.2], finished=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"pruner": "hyperband"}, "search.pruner='hyperband' must be one of"),
        ({"pruner_warmup_epochs": -1}, "search.pruner_warmup_epochs=-1 must be an integer >= 1"),
        ({"pruner_startup_trials": 0}, "search.pruner_startup_trials=0"),
        ({"pruner_reduction_factor": 1}, "search.pruner_reduction_factor=1 must be an integer >= 2"),
        ({"pruned_reward": "zero"}, "search.pruned_reward='zero' must be one of"),
    ],
)
def test_bad_pruner_settings_name_the_key(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_config(SearchConfig, override)


def test_a_pruner_over_children_validated_only_at_the_end_is_refused(session_cache_dir, tmp_path) -> None:
    end_only = ("trainer.patience=null", "trainer.epoch_selection=last")
    with pytest.raises(ConfigError, match="search.pruner=asha judges children .* set trainer.epoch_selection=best"):
        tiny_run(tmp_path, session_cache_dir, *PRUNED, *end_only)
    assert not RunDir(tmp_path).trials.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("search.pruner_min_epochs=4",), r"search.pruner_min_epochs=4 with trainer.max_epochs=4: .* could never"),
        (
            ("search.pruner=median", "search.pruner_warmup_epochs=5"),
            r"search.pruner_warmup_epochs=5 with trainer.max_epochs=4: search.pruner=median could never stop",
        ),
    ],
)
def test_a_pruner_that_could_never_stop_a_child_is_refused(session_cache_dir, tmp_path, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_run(tmp_path, session_cache_dir, *PRUNED, *overrides)
    assert not RunDir(tmp_path).trials.exists()


def test_a_child_that_stops_early_at_a_bar_is_not_counted_as_pruned(data_dir, tmp_path) -> None:
    from lightning_modules.trainer import evaluate_child

    task = load_task("trec", data_dir, max_examples=300, seed=0)
    budget = ChildTrainerConfig(max_epochs=30, patience=1)
    arch = Architecture(encoder="words", learning_rate=0.03)

    def child(bars):
        return evaluate_child(task, arch, budget, FeatureCache(tmp_path), seed=0, prune_below=bars)

    free = child({})
    assert free.stopped_by == "early_stopping" and free.epochs < 30
    # The epoch it stops after anyway has an unreachable bar: it converged, it was not pruned.
    both = child({free.epochs: 2.0})
    assert both.stopped_by == "early_stopping" and both.val_curve == free.val_curve


def test_out_of_time_outranks_early_stopping_and_a_bar_on_a_part_trained_epoch() -> None:
    from pytorch_lightning.trainer.states import TrainerFn

    from lightning_modules.trainer import PruneBelow, _stopped_by

    trainer = SimpleNamespace(early_stopping_callback=SimpleNamespace(stopped_epoch=3), global_step=9, max_steps=-1)
    # Early stopping judged the part-trained epoch: the child still ran out of time.
    assert _stopped_by(trainer, SimpleNamespace(overran=True), SimpleNamespace(pruned_at=0)) == "time_limit"
    assert _stopped_by(trainer, SimpleNamespace(overran=False), SimpleNamespace(pruned_at=3)) == "early_stopping"
    # Validating an epoch the watchdog cut short (should_stop already set): no bar applies.
    fitting = SimpleNamespace(
        sanity_checking=False,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        current_epoch=1,
        max_epochs=10,
        callback_metrics={"val/accuracy": torch.tensor(0.1)},
        should_stop=True,
    )
    pruner = PruneBelow({2: 0.9})
    pruner.on_validation_end(fitting, None)
    assert pruner.pruned_at == 0
    fitting.should_stop = False
    pruner.on_validation_end(fitting, None)
    assert pruner.pruned_at == 2 and fitting.should_stop


def test_a_child_below_the_bar_stops_after_that_epoch(data_dir, tmp_path) -> None:
    from lightning_modules.trainer import evaluate_child

    task = load_task("trec", data_dir, max_examples=300, seed=0)
    budget = ChildTrainerConfig(max_epochs=4, patience=None)
    arch = Architecture(encoder="words")

    def child(bars):
        return evaluate_child(task, arch, budget, FeatureCache(tmp_path), seed=0, prune_below=bars)

    free = child({})
    assert free.stopped_by == "max_epochs" and free.epochs == 4
    pruned = child({2: free.val_curve[0] + 2.0})  # unreachable at epoch 2
    assert pruned.stopped_by == "pruned" and pruned.epochs == 2
    assert pruned.val_curve == free.val_curve[:2]  # the same child, cut short
    assert pruned.val_accuracy == max(free.val_curve[:2])
    # A bar at the last epoch is never checked: stopping there would save nothing.
    assert child({4: 2.0}).stopped_by == "max_epochs"


def test_a_pruned_search_records_pruned_children_with_bars_from_earlier_trials_only(
    session_cache_dir, tmp_path
) -> None:
    tiny_run(tmp_path, session_cache_dir, *PRUNED)
    rows = read_trials(tmp_path)
    pruned = [row for row in rows if row.status == "pruned"]
    assert pruned, "asha pruned no child"
    asha = pruner("asha", startup_trials=2, min_epochs=1, reduction_factor=2)
    for row in rows:
        # The bars this child met: asha's over the trials of the earlier steps (batches of 4).
        earlier = [curve_of(r) for r in rows[: row.step * 4]]
        bars = asha.bars(curve for curve in earlier if curve)
        curve = row.metrics["val_curve"]
        stopped_at = next((e for e in sorted(bars) if stops_after(bars, e, max(curve[:e]), 4)), None)
        assert (row.status == "pruned") == (stopped_at is not None), row.trial
        if stopped_at:
            assert row.metrics["epochs"] == len(curve) == stopped_at
            assert row.reward == row.metrics["val_accuracy"] == max(curve)  # search.pruned_reward=best_so_far


def test_pruned_reward_failure_scores_a_pruned_child_as_failed(session_cache_dir, tmp_path) -> None:
    tiny_run(tmp_path, session_cache_dir, *PRUNED, "search.pruned_reward=failure", "search.failure_reward=0.01")
    rows = read_trials(tmp_path)
    assert any(row.status == "pruned" for row in rows)
    assert all(row.reward == 0.01 for row in rows if row.status == "pruned")
    assert all(row.reward == row.metrics["val_accuracy"] for row in rows if row.status == "ok")


@pytest.mark.slow
def test_a_pruned_search_killed_mid_search_resumes_to_the_same_trials(session_cache_dir, tmp_path) -> None:
    def train(run_dir: Path, *extra: str, kill_at: str | None = None):
        return train_py(session_cache_dir, *PRUNED, f"hydra.run.dir={run_dir}", *extra, kill_at=kill_at)

    assert train(tmp_path / "reference").returncode == 0
    reference = comparable(read_trials(tmp_path / "reference"))
    assert any(row["status"] == "pruned" for row in reference)
    for moment in ("log.appended:6", "search.evaluated:3"):  # mid-step, and after the step that set bars
        run_dir = tmp_path / moment.replace(":", "-")
        assert train(run_dir, kill_at=moment).returncode == -signal.SIGKILL
        resumed = train(tmp_path / "ignored", f"resume={run_dir}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert comparable(read_trials(run_dir)) == reference, moment
