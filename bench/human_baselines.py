"""Do searched children beat human-designed models? One multitask search against published numbers.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.human_baselines [--trials-per-task 16]

Runs ``train.py`` twice over the tasks whose ``meta.json`` carries published baselines,
on full data with the default (wide & deep) search space and two local workers:

1. the main job's PPO multitask search (``experiment=multitask``), whose best-validation
   child per task is compared on test with the best published number for the task;
2. a random search (``experiment=random``, ``--random-per-task`` trials per task): the
   spread of random children and how soon random search gets near the best found.

Writes ``bench/results/human_baselines.json`` and markdown tables for docs/benchmarks.md.
A search that was interrupted is resumed and a finished one reused, so a rerun only
does what is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from bench.runs import RESULTS, ROOT, train_search
from mnms.data.tasks import load_task, resolve_data_dir
from mnms.executors.trial import finished
from mnms.search.records import TrialRecord, read_trials
from mnms.utils.io import RunDir

TASKS = (
    "mr",
    "subj",
    "trec",
    "mpqa",
    "sst2",
    "sst5",
    "airline-sentiment",
    "disasters",
    "global-warming",
    "political-bias",
    "twenty-newsgroups",
)


def run_search(run_dir: Path, experiment: str, tasks: list[str], trials: int, args: argparse.Namespace) -> None:
    train_search(
        run_dir,
        f"experiment={experiment}",
        f"tasks=[{','.join(tasks)}]",
        f"search.trials={trials}",
        "search.batch_size=8",  # not the main job's 4: a larger batch per controller step over 11 tasks
        f"seed={args.seed}",
        "executor=local",
        *args.overrides,
    )


def published(task: str) -> dict:
    """The best published accuracy for ``task`` in its meta.json, its model and source, and
    whether it was measured on the test split we use."""
    meta = json.loads((resolve_data_dir(None) / task / "meta.json").read_text())
    best = max(meta["published_baselines"], key=lambda b: b["value"])
    official = meta["original_split_note"].startswith("Official")
    if "their own splits" in best["source"]:
        split = "theirs (unpublished)"
    elif official:
        split = "same test set"
    else:
        split = "10-fold CV, not ours"
    return {"model": best["model"], "accuracy": best["value"] / 100, "source": best["source"], "split": split}


def best_child(rows: list[TrialRecord], task: str) -> TrialRecord | None:
    """The task's finished child with the best validation reward (the first one on a tie)."""
    candidates = [r for r in rows if r.task == task and finished(r)]
    return max(candidates, key=lambda r: r.reward) if candidates else None


def trials_to_reach(rewards: list[float], target: float) -> int | None:
    """1-based trial at which the running best first reaches ``target`` (None: never)."""
    return next((i for i, r in enumerate(rewards, start=1) if r >= target), None)


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[round(q * 10) - 1] if len(values) > 1 else values[0]


def cost_kind(arch: dict) -> str:
    """The parts of a child that drive its cost: encoder, convolution, fine-tuned layers, wide tower."""
    parts = [arch["encoder"]]
    if arch.get("fine_tune_layers"):
        parts.append(f"top {arch['fine_tune_layers']} layer(s) fine-tuned")
    elif arch.get("fine_tune"):
        parts.append("table fine-tuned")
    if arch.get("conv_filters"):
        parts.append("conv")
    parts.append("no wide" if arch.get("wide", "none") == "none" else "wide")
    return ", ".join(parts)


def task_result(task: str, ppo: list[TrialRecord], random: list[TrialRecord]) -> dict:
    child = best_child(ppo, task)
    random_rewards = [r.reward for r in random if r.task == task]
    best_found = max([child.reward if child else 0.0, *random_rewards])
    baseline = published(task)
    test = child.metrics["test_accuracy"] if child else float("nan")
    return {
        "train_examples": len(load_task(task, resolve_data_dir(None)).splits["train"]),
        "published": baseline,
        "best_val": child.reward if child else float("nan"),
        "best_test": test,
        "beats_published": bool(child) and test > baseline["accuracy"],
        "best_trial": child.trial if child else None,
        "best_arch": child.decisions if child else None,
        "ppo_trials": sum(r.task == task for r in ppo),
        "ppo_wall_seconds": sum(r.wall_seconds for r in ppo if r.task == task),
        "ppo_median_wall_seconds": statistics.median(r.wall_seconds for r in ppo if r.task == task),
        "ppo_failed": sum(r.task == task and not finished(r) for r in ppo),
        "random": {
            "trials": len(random_rewards),
            "median": statistics.median(random_rewards),
            "p10": quantile(random_rewards, 0.1),
            "p90": quantile(random_rewards, 0.9),
            "best_after_10": max(random_rewards[:10]),
            "trials_to_95": trials_to_reach(random_rewards, 0.95 * best_found),
            "trials_to_99": trials_to_reach(random_rewards, 0.99 * best_found),
        }
        if random_rewards
        else None,
        "best_found": best_found,
    }


SIZE_BUCKETS = ((0, 5000), (5000, 9000), (9000, 20001))  # training examples


def child_costs(rows: list[TrialRecord], train_sizes: dict[str, int]) -> dict[str, dict]:
    """Median seconds of the finished children of each cost kind, over all tasks and by the
    training-set size of their task (how the cost grows with the data). Only children whose
    features came from the cache count: encoding a task is paid once, not per child."""
    seconds = defaultdict(list)
    for row in rows:
        if finished(row) and row.reused_from is None and row.metrics["features_from_cache"]:
            seconds[cost_kind(row.arch)].append((train_sizes[row.task], row.metrics["total_seconds"]))
    costs = {}
    for kind, pairs in sorted(seconds.items()):
        by_size = {
            f"{lo}-{hi - 1}": statistics.median(s for n, s in pairs if lo <= n < hi)
            for lo, hi in SIZE_BUCKETS
            if any(lo <= n < hi for n, _ in pairs)
        }
        costs[kind] = {"children": len(pairs), "median_seconds": statistics.median(s for _, s in pairs), **by_size}
    return costs


def markdown(result: dict) -> str:
    lines = [
        "| task | train examples | searched child: val | test | published (best) | beats it | "
        "published on | random children: median [p10, p90] | random best of 10 | best found | "
        "random trials to 95% / 99% | PPO median child s | PPO failed |",
        "| --- | ---: | ---: | ---: | --- | :---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task, r in result["tasks"].items():
        rnd = r["random"]
        random_cells = ["-", "-", "-"]
        if rnd:
            never = f">{rnd['trials']}"
            random_cells = [
                f"{rnd['median']:.3f} [{rnd['p10']:.3f}, {rnd['p90']:.3f}]",
                f"{rnd['best_after_10']:.3f}",
                f"{rnd['trials_to_95'] or never} / {rnd['trials_to_99'] or never}",
            ]
        beats = "yes" if r["beats_published"] else "no"
        cells = [
            task,
            str(r["train_examples"]),
            f"{r['best_val']:.3f}",
            f"**{r['best_test']:.3f}**",
            f"{r['published']['accuracy']:.3f} ({r['published']['model']})",
            beats,
            r["published"]["split"],
            *random_cells[:2],
            f"{r['best_found']:.3f}",
            random_cells[2],
            f"{r['ppo_median_wall_seconds']:.0f}",
            f"{r['ppo_failed']} of {r['ppo_trials']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    buckets = [f"{lo}-{hi - 1}" for lo, hi in SIZE_BUCKETS]
    lines += [
        "",
        "| child kind (features cached) | children | median s | "
        + " | ".join(f"on {b} examples" for b in buckets)
        + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(buckets),
    ]
    for kind, cost in result["child_costs"].items():
        sizes = " | ".join(f"{cost[b]:.1f}" if b in cost else "-" for b in buckets)
        lines.append(f"| {kind} | {cost['children']} | {cost['median_seconds']:.1f} | {sizes} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--trials-per-task", type=int, default=16)
    parser.add_argument("--random-per-task", type=int, default=10)
    parser.add_argument("--random-tasks", nargs="+", help="the tasks of the random search (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "human_baselines")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both searches")
    args = parser.parse_args()

    ppo_dir, random_dir = args.out / "ppo", args.out / "random"
    random_tasks = args.random_tasks or args.tasks
    run_search(ppo_dir, "multitask", args.tasks, args.trials_per_task * len(args.tasks), args)
    if args.random_per_task:
        run_search(random_dir, "random", random_tasks, args.random_per_task * len(random_tasks), args)
    ppo = read_trials(ppo_dir)
    random = read_trials(random_dir) if args.random_per_task else []
    summary = json.loads(RunDir(ppo_dir).summary.read_text())
    tasks = {task: task_result(task, ppo, random) for task in args.tasks}
    result = {
        "command": " ".join(sys.argv),
        "tasks": tasks,
        "beats_published": sum(r["beats_published"] for r in tasks.values()),
        "ppo_search_seconds": summary["seconds"]["loop"],
        "ppo_wall_seconds": sum(r.wall_seconds for r in ppo),
        "random_wall_seconds": sum(r.wall_seconds for r in random),
        "child_costs": child_costs(ppo + random, {task: r["train_examples"] for task, r in tasks.items()}),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "human_baselines.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(
        f"\nbeats the published number on {result['beats_published']} of {len(tasks)} tasks; "
        f"PPO search {result['ppo_search_seconds'] / 60:.1f} min wall, "
        f"{result['ppo_wall_seconds'] / 3600:.2f} child wall-hours (+{result['random_wall_seconds'] / 3600:.2f} random)"
    )


if __name__ == "__main__":
    main()
