"""The search loop on real tasks, real children, real records, real W&B offline files.

Small real tasks (a few hundred examples) and cheap encoders keep a child at tens of
milliseconds, so whole searches run in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.jobs import CHEAP_SPACE, TASKS, tiny_job
from helpers.tiny_search import tiny_run
from helpers.wandb_reader import find_offline_runs, read_offline_run
from mnms.search.loop import Search
from mnms.search.records import TrialRecord, read_trials
from mnms.tracking import Tracker, TrackingConfig

# Fields that legitimately differ between two runs of the same search.
TIMING = ("wall_seconds",)
METRIC_TIMING = ("total_seconds", "train_seconds", "features_from_cache")


def comparable(rows: list[TrialRecord]) -> list[dict]:
    """The records without what legitimately differs between two runs of one search: timings."""
    return [
        {
            **{k: v for k, v in row.to_json().items() if k not in TIMING},
            "metrics": {k: v for k, v in row.metrics.items() if k not in METRIC_TIMING},
        }
        for row in rows
    ]


def make_search(
    run_dir: Path,
    data_dir: Path,
    cache_dir: Path,
    *,
    space=CHEAP_SPACE,
    kind="ppo",
    trials=12,
    tracker=None,
    reuse=True,
) -> Search:
    job = tiny_job(data_dir, cache_dir, space=space, kind=kind, trials=trials, reuse_rewards=reuse)
    return job.build(run_dir, tracker=tracker)


def test_search_records_every_trial_and_the_best_per_task(data_dir, tmp_path) -> None:
    search = make_search(tmp_path / "run", data_dir, tmp_path / "cache")
    summary = search.run()
    rows = read_trials(tmp_path / "run")
    assert [row.trial for row in rows] == list(range(12))
    assert {row.task for row in rows} == set(TASKS)
    assert [row.task for row in rows[:8]] == ["trec"] * 4 + ["langid-tatoeba"] * 4  # round robin, batches of 4
    for row in rows:
        assert row.status == "ok" and row.reward == row.metrics["val_accuracy"]
        assert set(row.decisions) <= set(row.arch) and row.arch["batch_size"] == 32
    for task in TASKS:
        assert summary["best"][task]["reward"] == max(row.reward for row in rows if row.task == task)
    # Repeats are drawn again: each trained trial is a new child of its task, and a trial shares
    # an earlier result only in a step where every draw repeated (the 8-architecture space runs out).
    trained = [(row.task, json.dumps(row.decisions, sort_keys=True)) for row in rows if row.reused_from is None]
    assert len(trained) == len(set(trained))
    assert summary["distinct"] == {task: sum(t == task for t, _ in trained) for task in TASKS}
    exhausted = {step for step, _, draws, repeats in search.draw_log if draws == repeats}
    assert all(row.step in exhausted for row in rows if row.reused_from is not None)
    assert summary["trials"] == 12 and summary["steps"] == len(search.draw_log) >= 3


def test_identical_architectures_reuse_their_reward(data_dir, tmp_path) -> None:
    one_arch = {"decisions": [{"name": "encoder", "choices": ["words"]}]}
    make_search(tmp_path / "run", data_dir, tmp_path / "cache", space=one_arch, trials=8).run()
    rows = read_trials(tmp_path / "run")
    trained = [row for row in rows if row.reused_from is None]
    assert len(trained) == len(TASKS)  # one child per task; every other trial reuses it
    for row in rows:
        source = rows[row.reused_from] if row.reused_from is not None else row
        assert row.reward == source.reward and source.task == row.task


def test_a_task_the_trials_never_reach_is_warned_about_and_reported(data_dir, tmp_path, caplog) -> None:
    summary = make_search(tmp_path / "run", data_dir, tmp_path / "cache", trials=4).run()
    assert "search.trials=4 in steps of search.batch_size=4 reaches 1 of the 2 tasks: langid-tatoeba" in caplog.text
    assert "give search.trials >= 8" in caplog.text
    assert summary["unsuccessful"] == {"langid-tatoeba": {"trials": 0, "error": None}}


def test_failed_children_are_recorded_and_the_search_goes_on(data_dir, tmp_path) -> None:
    # A sentence-transformers model that does not exist: loading it raises, offline and fast.
    broken = {"decisions": [{"name": "encoder", "choices": ["words", f"st:{tmp_path}/no-such-model"]}]}
    make_search(tmp_path / "run", data_dir, tmp_path / "cache", space=broken, kind="random", trials=16).run()
    rows = read_trials(tmp_path / "run")
    failed = [row for row in rows if row.status == "failed"]
    assert failed and len(rows) == 16
    for row in failed:
        assert row.reward == 0.0 and "no-such-model" in row.error
    assert any(row.status == "ok" and row.reward > 0 for row in rows)


def test_wandb_offline_run_holds_every_trial(data_dir, tmp_path) -> None:
    cfg = TrackingConfig(mode="offline", dir=str(tmp_path / "run"), job_type="multitask", group="t", table_every=5)
    with Tracker(cfg, {"tasks": list(TASKS)}) as tracker:
        make_search(tmp_path / "run", data_dir, tmp_path / "cache", tracker=tracker).run()
    import wandb

    wandb.teardown()  # wandb-core finishes writing the run file after finish() returns
    (run_path,) = find_offline_runs(tmp_path / "run")
    run = read_offline_run(run_path)
    table = run.tables["trials"]
    rows = read_trials(tmp_path / "run")
    assert [r["trial"] for r in table] == [row.trial for row in rows]
    assert [r["reward"] for r in table] == pytest.approx([row.reward for row in rows])
    assert [r["arch.encoder"] for r in table] == [row.arch["encoder"] for row in rows]
    assert any("trec/p/encoder/words" in h for h in run.history)
    assert any("langid-tatoeba/best" in h for h in run.history)
    assert run.config["tasks"] == list(TASKS) and run.exit_code == 0


def test_resume_with_different_settings_is_refused(data_dir, tmp_path) -> None:
    make_search(tmp_path / "run", data_dir, tmp_path / "cache", trials=4).run()
    other_space = {"decisions": [{"name": "encoder", "choices": ["words"]}]}
    with pytest.raises(ValueError, match="cannot resume .* its space is"):
        make_search(tmp_path / "run", data_dir, tmp_path / "cache", space=other_space, trials=8)


def test_a_refused_resume_names_the_setting_that_differs(data_dir, session_cache_dir, tmp_path) -> None:
    common = ("tasks=[trec]", "search.trials=4")
    tiny_run(tmp_path / "run", session_cache_dir, *common)
    with pytest.raises(ValueError, match=r"its strategy.policy.learning_rate is 0.01, this run's is 0.1;"):
        tiny_run(
            tmp_path / "ignored",
            session_cache_dir,
            *common,
            "strategy.policy.learning_rate=0.1",
            f"resume={tmp_path / 'run'}",
        )
