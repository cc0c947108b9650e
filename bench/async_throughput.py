"""Trials per minute with 2 local workers, sync against async, on the default wide & deep space.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.async_throughput [--repeats 2] [--trials 24]

One seeded random search (so every mode trains exactly the same children: random
proposals do not depend on rewards) over the default space, run ``sequential``, then on
``local`` with 2 workers in ``search.mode=sync`` and ``async``, in rotating order,
``--repeats`` times. Every trial trains (``reuse_rewards=false``); features are cached
and the workers warmed before timing. Children are full default children (up to 10
epochs, early stopping, 120 s cap) on tasks capped at ``--max-examples`` per split, so a
repeat takes minutes rather than an hour.

The machine's own limit comes from the same runs: each child's wall time side by side
(the 2-worker runs) against alone (sequential). Two workers can give at most
``2 x alone / side by side`` of one. The trial sequence has its own limit: children
handed out in proposal order to the first free of 2 workers (what async does) finish
no sooner than the greedy schedule of their alone times (``order_limit``); one long
child proposed last idles the other worker. Writes ``bench/results/async_throughput.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bench.runs import RESULTS, ROOT
from bench.throughput import cpu_times
from mnms.child.config import ChildTrainerConfig
from mnms.data.tasks import load_task
from mnms.executors import executor_config, make_executor
from mnms.executors.base import Executor
from mnms.search.config import SearchConfig
from mnms.search.job import SearchJob
from mnms.search.records import TrialRecord, read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import strategy_config

TASKS = ("trec", "global-warming")
SETUPS = {
    "sequential": ({"kind": "sequential"}, "sync"),
    "local-sync": ({"kind": "local", "workers": 2}, "sync"),
    "local-async": ({"kind": "local", "workers": 2}, "async"),
}


def timed(executor: Executor, mode: str, trials: int, job: SearchJob, work: Path) -> dict:
    search = dataclasses.replace(job.search, trials=trials, mode=mode)
    run_dir = Path(tempfile.mkdtemp(dir=work))
    search = dataclasses.replace(job, search=search).build(run_dir, executor=executor)
    cpu, started = cpu_times(), time.perf_counter()
    search.run()
    seconds = time.perf_counter() - started
    idle = [after - before for after, before in zip(cpu_times(), cpu, strict=True)]
    rows = read_trials(run_dir)
    return {
        "seconds": seconds,
        "trials_per_minute": 60 * len(rows) / seconds,
        "machine_idle_fraction": idle[0] / idle[1],
        "wall_seconds": {key(row): row.wall_seconds for row in rows},
    }


def in_order_makespan(seconds: list[float], workers: int) -> float:
    """When the last child ends if each goes, in order, to the first free of ``workers``."""
    free = [0.0] * workers
    for duration in seconds:
        free[free.index(min(free))] += duration
    return max(free)


def key(row: TrialRecord) -> str:
    return json.dumps([row.task, row.decisions], sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-examples", type=int, default=1500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mnms-async-"))
    job = SearchJob(
        tasks={
            name: load_task(name, os.environ["MNMS_DATA_DIR"], max_examples=args.max_examples, seed=0) for name in TASKS
        },
        space=SearchSpace.from_config(yaml.safe_load((ROOT / "conf" / "search_space" / "default.yaml").read_text())),
        cache_dir=os.environ.get("MNMS_CACHE_DIR", str(ROOT / ".cache" / "mnms")),
        strategy=strategy_config({"kind": "random"}),
        search=SearchConfig(batch_size=4, progress=False, reuse_rewards=False),
        trainer=ChildTrainerConfig(time_limit_s=120),
    )
    runner = job.runner()
    executors = {name: make_executor(executor_config(options), runner) for name, (options, _) in SETUPS.items()}
    runs: dict[str, list[dict]] = {name: [] for name in SETUPS}
    try:
        # Warm-up: a sequential pass encodes every task with every encoder the search meets
        # (cached), and each pool's workers import torch and load the encoders.
        for name in ("sequential", "local-sync", "local-async"):
            timed(executors[name], SETUPS[name][1], 8, job, work)
        for repeat in range(args.repeats):
            names = list(SETUPS)[repeat % 3 :] + list(SETUPS)[: repeat % 3]
            for name in names:
                runs[name].append(timed(executors[name], SETUPS[name][1], args.trials, job, work))
                print(f"repeat {repeat} {name}: {runs[name][-1]['trials_per_minute']:.2f} trials/min", flush=True)
    finally:
        for executor in executors.values():
            executor.close()
    for name in SETUPS:  # random search: every mode trained the same children
        assert all(set(run["wall_seconds"]) == set(runs["sequential"][0]["wall_seconds"]) for run in runs[name])
    median = {name: statistics.median(run["trials_per_minute"] for run in r) for name, r in runs.items()}
    alone = {
        k: statistics.median(run["wall_seconds"][k] for run in runs["sequential"])
        for k in runs["sequential"][0]["wall_seconds"]
    }
    paired = {
        k: statistics.median(run["wall_seconds"][k] for name in ("local-sync", "local-async") for run in runs[name])
        for k in alone
    }
    limit = 2 * sum(alone.values()) / sum(paired.values())
    order_limit = sum(alone.values()) / in_order_makespan(list(alone.values()), 2)
    result = {
        "command": f"python -m bench.async_throughput --repeats {args.repeats} --trials {args.trials} "
        f"--max-examples {args.max_examples}",
        "tasks": TASKS,
        "median_trials_per_minute": median,
        "speedup_vs_sequential": {name: median[name] / median["sequential"] for name in median},
        "machine_limit_two_workers": limit,
        "order_limit_two_workers": order_limit,
        "child_seconds_alone_sum": sum(alone.values()),
        "child_seconds_side_by_side_sum": sum(paired.values()),
        "runs": {
            name: [{k: v for k, v in run.items() if k != "wall_seconds"} for run in r] for name, r in runs.items()
        },
    }
    (RESULTS / "async_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| setup | trials / min (median) | vs sequential | per repeat |")
    print("| --- | ---: | ---: | --- |")
    for name in SETUPS:
        each = ", ".join(f"{run['trials_per_minute']:.2f}" for run in runs[name])
        print(f"| {name} | {median[name]:.2f} | {median[name] / median['sequential']:.2f}x | {each} |")
    print(f"machine limit for 2 workers (children alone vs side by side): {limit:.2f}x")
    print(f"this trial sequence's limit for 2 workers (in proposal order, alone times): {order_limit:.2f}x")


if __name__ == "__main__":
    main()
