"""Trials per minute of one fixed search under each executor, side by side in one process.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.throughput [--repeats 3] [--trials 48]

The same seeded PPO search (same tasks, space and children of about 0.5-1 s) runs under
``sequential``, ``local`` (2 workers, pinned and unpinned) and ``ray`` (private Ray,
2 CPUs), in rotating
order, ``--repeats`` times each; the machine is shared, so only medians of interleaved
runs mean anything, and the load average is recorded with each run. Every executor is
started and warmed once (start-up is reported separately: a real search amortises it)
and features are cached before timing, so the figures are steady-state training plus
dispatch. Also measured: pickled sizes of what crosses the wire, the driver's serial
cost per trial, and the executors' dispatch capacity on empty trials, from which
docs/scaling.md extrapolates to many workers. Writes bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.runs import RESULTS
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.tasks import load_task
from mnms.executors import executor_config, make_executor
from mnms.executors.base import Executor
from mnms.executors.runner import ChildRunner
from mnms.executors.trial import TrialRequest
from mnms.search.config import SearchConfig
from mnms.search.job import SearchJob
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.tracking import Tracker, TrackingConfig

TASKS = ("trec", "langid-tatoeba")
DEFAULT_RUN_TASKS = ("sst2", "trec", "french-allocine-tv", "langid-tatoeba")  # conf/mode/search.yaml's tasks
SPACE = {
    "decisions": [
        {"name": "encoder", "choices": ["words", "char-ngrams"]},
        {"name": "hidden_layers", "choices": [1, 2]},
        {"name": "learning_rate", "choices": [0.001, 0.01]},
    ]
}
SETUPS = {
    "sequential": {"kind": "sequential"},
    "local": {"kind": "local", "workers": 2},
    "local-unpinned": {"kind": "local", "workers": 2, "pin_cores": False},
    "ray": {"kind": "ray", "num_cpus": 2},
}
CHILD_DEFAULTS = {"batch_size": 64, "width_1": 128, "width_2": 128}


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values)  # idle + iowait


def timed_search(executor: Executor, job: SearchJob, work: Path) -> dict:
    """One full search (fresh run dir, W&B offline as a default run would) timed around ``run``."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    with Tracker(TrackingConfig(mode="offline", dir=str(run_dir)), {"bench": "throughput"}) as tracker:
        search = job.build(run_dir, executor=executor, tracker=tracker)
        load, cpu, started = load_average(), cpu_times(), time.perf_counter()
        summary = search.run()
        seconds = time.perf_counter() - started
        idle = [after - before for after, before in zip(cpu_times(), cpu)]
    rows = read_trials(run_dir)
    driver = {key: summary["seconds"][key] / len(rows) for key in ("policy", "records", "checkpoint", "tracking")}
    child = [row.wall_seconds for row in rows]
    steps = [child[start : start + job.search.batch_size] for start in range(0, len(child), job.search.batch_size)]
    return {
        "seconds": seconds,
        "trials_per_minute": 60 * len(rows) / seconds,
        "load_average": load,
        # Share of all cores left idle: about 0.5 for a sequential run on an idle 2-core
        # machine; less means other jobs took CPU from this measurement.
        "machine_idle_fraction": idle[0] / idle[1],
        "driver_seconds_per_trial": sum(driver.values()),
        "driver_breakdown_per_trial": driver,
        "child_seconds_median": statistics.median(child),
        "child_seconds_mean": statistics.mean(child),
        "slowest_child_per_step_mean": statistics.mean(max(step) for step in steps),
        "slowest_child": max(child),
        "rewards": [row.reward for row in rows],
    }


def empty_trial_rate(executor: Executor, count: int) -> float:
    """Round trips per second of requests that fail at once (unknown task): pure dispatch cost."""
    requests = [TrialRequest(i, "no-such-task", {}, 0) for i in range(count)]
    started = time.perf_counter()
    outcomes = executor.evaluate(requests)
    assert all(outcome.status == "failed" for outcome in outcomes)
    return count / (time.perf_counter() - started)


def wire_sizes(runner: ChildRunner, data_dir: str) -> dict[str, int]:
    """Pickled bytes per request and outcome, and of the runner each worker receives once."""
    arch = Architecture(encoder="words").to_dict()
    request = TrialRequest(123, "trec", arch, 0)
    full = ChildRunner({name: load_task(name, data_dir) for name in DEFAULT_RUN_TASKS}, runner.trainer_cfg, None)
    return {
        "request": len(pickle.dumps(request)),
        "outcome": len(pickle.dumps(runner(request))),
        "runner_bench_tasks": len(pickle.dumps(runner)),
        "runner_default_tasks_full": len(pickle.dumps(full)),
    }


def amdahl(child: dict[str, float], driver_per_trial: float, dispatch_per_trial: float) -> list[dict]:
    """Trials per minute at W workers and B children per step. A step is serial driver work
    and dispatch for B trials, then the children: ceil(B / W) rounds of the mean child, but
    never less than the step's slowest child (measured per step at B=8; for larger B, the
    slowest child of the whole search stands in)."""
    estimates = []
    for workers in (1, 2, 8, 100):
        for batch in (8, 100):
            slowest = child["slowest_per_step_b8"] if batch <= 8 else child["slowest"]
            train = max(math.ceil(batch / workers) * child["mean"], slowest)
            step = batch * (driver_per_trial + dispatch_per_trial) + train
            estimates.append({"workers": workers, "batch_size": batch, "trials_per_minute": 60 * batch / step})
    return estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-examples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    data_dir = os.environ["MNMS_DATA_DIR"]
    work = Path(tempfile.mkdtemp(prefix="mnms-throughput-"))
    job = SearchJob(
        tasks={name: load_task(name, data_dir, max_examples=args.max_examples, seed=0) for name in TASKS},
        space=SearchSpace.from_config(SPACE),
        # reuse_rewards=False: every trial trains, so each executor does the same work.
        search=SearchConfig(trials=args.trials, batch_size=args.batch_size, progress=False, reuse_rewards=False),
        trainer=ChildTrainerConfig(max_epochs=args.epochs),
        child=Architecture(**CHILD_DEFAULTS),
        cache_dir=work / "cache",
    )
    runner = job.runner()
    for task in TASKS:  # encode once, so timed runs measure training and dispatch only
        for encoder in ("words", "char-ngrams"):
            runner(TrialRequest(0, task, Architecture(encoder=encoder).to_dict(), 0))
    executors: dict[str, Executor] = {}
    startup: dict[str, float] = {}
    runs: dict[str, list[dict]] = {name: [] for name in SETUPS}
    try:
        for name, options in SETUPS.items():
            started = time.perf_counter()
            executors[name] = make_executor(executor_config(options), runner)
            warm = [TrialRequest(i, TASKS[i % 2], Architecture(encoder="words").to_dict(), 0) for i in range(4)]
            executors[name].evaluate(warm)  # workers import torch and fetch the runner here
            startup[name] = time.perf_counter() - started
        for repeat in range(args.repeats):
            names = list(SETUPS)
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                runs[name].append(timed_search(executors[name], job, work))
                run = runs[name][-1]
                print(
                    f"repeat {repeat} {name:>14}: {run['trials_per_minute']:6.1f} trials/min (load "
                    f"{run['load_average']:.2f}, machine idle {run['machine_idle_fraction']:.0%})",
                    flush=True,
                )
        dispatch = {name: empty_trial_rate(executors[name], 200) for name in SETUPS}
    finally:
        for executor in executors.values():
            executor.close()
        shutil.rmtree(work, ignore_errors=True)
    assert all(run["rewards"] == runs["sequential"][0]["rewards"] for r in runs.values() for run in r), (
        "executors disagree on the trial log: throughput figures would compare different searches"
    )
    median = {name: statistics.median(run["trials_per_minute"] for run in r) for name, r in runs.items()}
    every_run = [run for r in runs.values() for run in r]
    driver = statistics.median(run["driver_seconds_per_trial"] for run in every_run)
    breakdown = {
        key: statistics.median(run["driver_breakdown_per_trial"][key] for run in every_run)
        for key in every_run[0]["driver_breakdown_per_trial"]
    }
    child = {
        name: statistics.median(run[key] for run in runs["sequential"])
        for name, key in (
            ("median", "child_seconds_median"),
            ("mean", "child_seconds_mean"),
            ("slowest_per_step_b8", "slowest_child_per_step_mean"),
            ("slowest", "slowest_child"),
        )
    }
    results = {
        "setup": {
            "tasks": TASKS,
            "space": SPACE,
            "child_defaults": CHILD_DEFAULTS,
            "trials": args.trials,
            "batch_size": args.batch_size,
            "max_examples": args.max_examples,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "executors": SETUPS,
            "cores": len(os.sched_getaffinity(0)),
            "child_threads": runner.trainer_cfg.threads,
            "strategy": "ppo",
            "tracking": "wandb offline",
        },
        "median_trials_per_minute": median,
        "speedup_vs_sequential": {name: median[name] / median["sequential"] for name in median},
        "ray_vs_local": median["ray"] / median["local"],
        "startup_seconds": startup,
        "sequential_child_seconds": child,
        "driver_seconds_per_trial": driver,
        "driver_breakdown_per_trial": breakdown,  # policy = propose + observe (PPO update)
        "empty_trials_per_second": dispatch,
        "wire_bytes": wire_sizes(runner, data_dir),
        "estimate_ray": amdahl(child, driver, 1 / dispatch["ray"]),
        "runs": {name: [{k: v for k, v in run.items() if k != "rewards"} for run in r] for name, r in runs.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| executor | trials/min (median) | vs sequential | start-up s | empty trials/s |")
    print("| --- | --- | --- | --- | --- |")
    for name in SETUPS:
        print(
            f"| {name} | {median[name]:.1f} | {median[name] / median['sequential']:.2f}x | {startup[name]:.1f} "
            f"| {dispatch[name]:.0f} |"
        )
    print(
        f"ray / local = {results['ray_vs_local']:.2f}; driver {1000 * driver:.1f} ms/trial; "
        f"child median {child['median']:.2f} s, mean {child['mean']:.2f} s; wrote {RESULTS / 'throughput.json'}"
    )


if __name__ == "__main__":
    main()
