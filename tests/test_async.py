"""Asynchronous search and the executors' submit/wait: real children, real worker pools, real kills."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from test_executors import KillingRunner, make_runner
from test_reliability import train_py

from helpers.jobs import tiny_job
from mnms.executors import executor_config, make_executor
from mnms.executors.base import Executor, SequentialExecutor
from mnms.executors.trial import TrialRequest
from mnms.search.loop import Search
from mnms.search.records import load_checkpoint, read_trials
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir

TRIALS, BATCH = 12, 4


def search(
    run_dir: Path, data_dir: Path, cache_dir: Path, *, mode: str, kind: str = "ppo", executor: Executor | None = None
) -> Search:
    """A 12-trial search on the sequential executor, or on ``executor``."""
    job = tiny_job(data_dir, cache_dir, kind=kind, trials=TRIALS, batch_size=BATCH, mode=mode, reuse_rewards=False)
    return job.build(run_dir, executor=executor)


def decisions(rows) -> Counter:
    return Counter(json.dumps([row.task, row.decisions], sort_keys=True) for row in rows)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("async-cache")


@pytest.mark.slow
def test_submit_and_wait_return_every_child_once(data_dir, cache_dir) -> None:
    runner = make_runner(data_dir, cache_dir)
    requests = [TrialRequest(trial, "trec", {"encoder": "words", "batch_size": 32}, 0) for trial in range(3)]
    pool = make_executor(executor_config({"kind": "local", "workers": 2}), runner)
    for executor in (SequentialExecutor(runner), pool):
        try:
            with pytest.raises(RuntimeError, match="no child submitted"):
                executor.wait()
            for request in requests:
                executor.submit(request)
            assert executor.in_flight == 3
            finished = []
            while executor.in_flight:
                finished += executor.wait()
            assert sorted(request.trial for request, _ in finished) == [0, 1, 2]
            assert all(outcome.status == "ok" for _, outcome in finished)
            # The same child, whichever worker trained it.
            assert len({outcome.metrics["val_accuracy"] for _, outcome in finished}) == 1
        finally:
            executor.close()
    assert pool.capacity == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_async_search_trains_what_sync_trains_without_losing_or_repeating_a_trial(data_dir, cache_dir, tmp_path):
    """Random search proposes the same children whatever the mode: async must train each exactly once."""
    runner = make_runner(data_dir, cache_dir)
    sync = search(tmp_path / "sync", data_dir, cache_dir, mode="sync", kind="random").run()
    executor = make_executor(executor_config({"kind": "local", "workers": 2}), runner)
    try:
        summary = search(tmp_path / "async", data_dir, cache_dir, mode="async", kind="random", executor=executor).run()
    finally:
        executor.close()
    rows = read_trials(tmp_path / "async")
    assert [row.trial for row in rows] == list(range(TRIALS)) and summary["trials"] == sync["trials"] == TRIALS
    assert decisions(rows) == decisions(read_trials(tmp_path / "sync"))
    by_arch = {json.dumps([r.task, r.decisions], sort_keys=True): r.metrics["val_accuracy"] for r in rows}
    for row in read_trials(tmp_path / "sync"):  # and each child scored as it did in the sync search
        assert by_arch[json.dumps([row.task, row.decisions], sort_keys=True)] == row.metrics["val_accuracy"]
    assert load_checkpoint(tmp_path / "async")["unobserved"] == {}  # the strategy saw every trial


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_async_ppo_learns_from_every_trial_with_its_behaviour_log_prob(data_dir, cache_dir, tmp_path) -> None:
    executor = make_executor(executor_config({"kind": "local", "workers": 2}), make_runner(data_dir, cache_dir))
    try:
        run = search(tmp_path, data_dir, cache_dir, mode="async", executor=executor)
        run.run()
    finally:
        executor.close()
    rows = read_trials(tmp_path)
    assert len(rows) == TRIALS and all(row.log_prob < 0 for row in rows)
    # The replay bank holds each trial once, with the log-prob of the policy that proposed it
    # (PPO's importance ratio needs it: that policy may be several updates old).
    bank = sorted((e.task, e.log_prob, e.reward) for e in run.strategy.bank.items)
    assert bank == sorted((row.task, row.log_prob, row.reward) for row in rows)
    assert load_checkpoint(tmp_path)["unobserved"] == {}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_lost_mid_trial_leaves_no_half_recorded_trial(data_dir, cache_dir, tmp_path) -> None:
    """Two workers die (SIGKILL) while training in an async search: each child is sent again, recorded once."""
    markers = tmp_path / "markers"
    markers.mkdir()
    # Tickets (request.trial) count submissions: the first child, and one mid-search.
    runner = make_runner(data_dir, cache_dir, cls=KillingRunner, deaths={0: 1, 6: 1}, marker_dir=markers)
    executor = make_executor(executor_config({"kind": "local", "workers": 2}), runner)
    try:
        search(tmp_path / "async", data_dir, cache_dir, mode="async", kind="random", executor=executor).run()
    finally:
        executor.close()
    assert sorted(p.name for p in markers.iterdir()) == ["trial0-0", "trial0-1", "trial6-0", "trial6-1"]
    rows = read_trials(tmp_path / "async")
    assert [row.trial for row in rows] == list(range(TRIALS)) and all(row.status == "ok" for row in rows)
    search(tmp_path / "sync", data_dir, cache_dir, mode="sync", kind="random").run()
    assert decisions(rows) == decisions(read_trials(tmp_path / "sync"))


def test_async_refuses_a_strategy_that_needs_each_batch_back_in_order(data_dir, cache_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match="search.mode=async needs a strategy .* strategy=optuna .* search.mode=sync"):
        search(tmp_path, data_dir, cache_dir, mode="async", kind="optuna")


@pytest.mark.slow
def test_an_async_search_killed_anywhere_resumes_with_no_trial_lost_or_repeated(session_cache_dir, tmp_path):
    """SIGKILL between logging a trial and learning from it, mid-wait, and mid-checkpoint; then resume.

    Every line logged before the kill stays as it was (no trial lost, none trained twice),
    and the resumed search ends with exactly the budget, numbered in order.
    """
    overrides = (
        "tasks=[trec,langid-tatoeba]",
        "search.trials=12",
        "search.mode=async",
        "search.reuse_rewards=false",
        "executor=local",
        "executor.workers=2",
    )
    for moment in ("log.appended:5", "search.evaluated:4", "checkpoint.written:2"):
        run_dir = tmp_path / moment.replace(":", "-")
        killed = train_py(session_cache_dir, *overrides, f"hydra.run.dir={run_dir}", kill_at=moment)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        logged = RunDir(run_dir).trials.read_bytes()
        resumed = train_py(session_cache_dir, *overrides, f"hydra.run.dir={tmp_path / 'ignored'}", f"resume={run_dir}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        rows = read_trials(run_dir)
        assert RunDir(run_dir).trials.read_bytes().startswith(logged), moment
        assert [row.trial for row in rows] == list(range(12)), moment
        # Nothing proposed again on resume: no step has more trials than its batch (8).
        assert max(Counter(row.step for row in rows).values()) <= 8, moment
        state = load_checkpoint(run_dir)
        assert state["unobserved"] == {}, moment
        # PPO learned from every trial exactly once: its replay bank holds each row once.
        bank = Counter(
            json.dumps([e["task"], e["arch"], e["log_prob"]], sort_keys=True)
            for e in state["strategy"]["bank"]["items"]
        )
        assert bank == Counter(json.dumps([row.task, row.decisions, row.log_prob], sort_keys=True) for row in rows), (
            moment
        )


@pytest.mark.parametrize("reuse", [True, False])
def test_a_proposal_identical_to_one_still_training_waits_for_it_and_shares_its_result(
    data_dir, cache_dir, tmp_path, reuse
) -> None:
    """A one-architecture space: every proposal is the first one's twin, so one child trains for all."""
    executor = SequentialExecutor(make_runner(data_dir, cache_dir))
    executor.capacity = 2  # room for a second child while the first is in flight
    submitted = []
    executor._submit = lambda request: (submitted.append(request), executor._queue.append(request))
    one_arch = {"decisions": [{"name": "encoder", "choices": ["words"]}]}
    job = tiny_job(
        data_dir, cache_dir, tasks=["trec"], space=one_arch, kind="random", trials=4, mode="async", reuse_rewards=reuse
    )
    job.build(tmp_path, executor=executor).run()
    rows = read_trials(tmp_path)
    assert len(rows) == 4 and all(row.status == "ok" for row in rows)
    if reuse:
        assert len(submitted) == 1 and [row.reused_from for row in rows] == [None, 0, 0, 0]
        assert all(row.metrics == rows[0].metrics for row in rows)
    else:  # search.reuse_rewards=false: every proposal trains
        assert len(submitted) == 4 and [row.reused_from for row in rows] == [None] * 4
