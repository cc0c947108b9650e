"""Does pruning buy the same best child for less compute? Unpruned against ``asha`` and ``median`` searches.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.pruning [--seeds 0 1 2] [--trials-per-task 24]

For each seed, one multitask PPO search over ``--tasks`` per pruner (the main job's
settings: default wide & deep space, whole tasks, batches of 4, two local workers), all
with the same trial budget. Per task and seed it reports the compute (summed child
training seconds, see ``cost``, and epochs trained) each search spent until its best validation accuracy
reached the unpruned searches' best, within one standard deviation across seeds (the
issue's "equal best"), and the ratio to what the unpruned search spent to reach it.

It also measures the bias pruning brings: on the unpruned searches' full learning
curves, how often the asha rule (bars from earlier trials only, as in a search) would
have stopped a child that ended in its task's top decile, and how well accuracy after
one epoch ranks children by their final accuracy.

Writes ``bench/results/pruning-<pruners>.json`` and prints markdown for docs/benchmarks.md. Runs
are resumed or reused (``bench.runs``), so a rerun only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from bench.runs import RESULTS, ROOT, search_ended, train_search
from mnms.child.stopping import stops_after
from mnms.executors.trial import PRUNED, finished
from mnms.report.load import child_seconds, run_config
from mnms.search.config import SearchConfig
from mnms.search.pruning import Pruner, curve_of
from mnms.search.records import TrialRecord, read_trials
from mnms.utils.config import from_config

TASKS = ("trec", "global-warming", "corporate-messaging")


def run_dir(out: Path, pruner: str, seed: int) -> Path:
    return out / f"{pruner}-seed{seed}"


def task_rows(rows: list[TrialRecord], task: str) -> list[TrialRecord]:
    return [row for row in rows if row.task == task]


def compute_to_reach(rows: list[TrialRecord], target: float) -> dict | None:
    """Trials, child training seconds and epochs spent until the best reward reached ``target``; None if never."""
    seconds = epochs = 0.0
    for count, row in enumerate(rows, start=1):
        seconds += child_seconds(row)
        epochs += row.metrics.get("epochs", 0) if row.reused_from is None else 0
        if finished(row) and row.reward >= target:
            return {"trials": count, "child_seconds": seconds, "epochs": epochs}
    return None


def best(rows: list[TrialRecord]) -> float:
    return max((row.reward for row in rows if finished(row)), default=0.0)


def false_prunes(rows: list[TrialRecord], pruner: Pruner, max_epochs: int) -> dict:
    """Replay ``pruner`` on an unpruned search's own children (``trainer.max_epochs``), with bars from earlier
    trials only, by the rule a child applies (``stops_after``).

    The same proposals, so this isolates what pruning saves and whom it stops from how it
    changes the controller's course: children it would have stopped, how many of the
    task's top decile among them, the share of training compute saved (a stopped child
    costing its epochs so far, pro rata), and whether the task's best child survives.
    """
    trained = [row for row in rows if row.reused_from is None and curve_of(row)]
    if len(trained) < 10:
        return {"children": len(trained)}
    top = float(np.percentile([row.reward for row in trained], 90))
    best_row = max(trained, key=lambda row: row.reward)
    stopped = stopped_top = tops = 0
    saved = total = 0.0
    best_survives = True
    for row in trained:
        curve = curve_of(row)
        # As in a sync search: bars from the steps before this child's. A bar at the curve's
        # last epoch stops nothing: the child stopped there anyway (out of epochs, or converged).
        bars = pruner.bars(curve_of(r) for r in trained if r.step < row.step)
        last = len(curve.accuracies)
        stop = next((e for e in sorted(bars) if e < last and stops_after(bars, e, curve.best_at(e), max_epochs)), None)
        total += child_seconds(row)
        tops += row.reward >= top
        if stop is not None:
            stopped += 1
            stopped_top += row.reward >= top
            saved += child_seconds(row) * (1 - stop / len(curve.accuracies))
            best_survives = best_survives and row is not best_row
    first = [row.metrics["val_curve"][0] for row in trained]
    return {
        "children": len(trained),
        "would_stop": stopped,
        "top_decile": tops,
        "top_decile_stopped": stopped_top,
        "compute_saved_fraction": saved / total if total else 0.0,
        "best_survives": best_survives,
        "spearman_epoch1_final": spearman(first, [row.reward for row in trained]),
    }


def replay_pruner(out: Path, kind: str, seed: int) -> Pruner:
    """The pruner ``kind`` as its searches in ``out`` ran it, or with the defaults when none ran it."""
    ran = run_dir(out, kind, seed)
    return (
        from_config(SearchConfig, run_config(ran).search).pruning if ran.is_dir() else SearchConfig(pruner=kind).pruning
    )


def spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(values)) for values in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def analyse(out: Path, tasks: list[str], seeds: list[int], pruners: list[str]) -> dict:
    """Per task: each pruner's compute to the target, for the seeds whose searches of every pruner finished."""
    done = [s for s in seeds if all(search_ended(run_dir(out, p, s)) for p in pruners)]
    if not done:
        raise SystemExit(f"no seed of {seeds} has a finished search for every pruner of {pruners} in {out}")
    seeds = done
    rows = {(p, s): read_trials(run_dir(out, p, s)) for p in pruners for s in seeds}
    max_epochs = {s: run_config(run_dir(out, "none", s)).trainer.max_epochs for s in seeds}
    replayed = {kind: replay_pruner(out, kind, seeds[0]) for kind in ("asha", "median")}
    result: dict = {"seeds": seeds, "tasks": {}}
    for task in tasks:
        unpruned = [best(task_rows(rows["none", s], task)) for s in seeds]
        spread = statistics.stdev(unpruned) if len(unpruned) > 1 else 0.0
        target = statistics.median(unpruned) - spread
        entry: dict = {"unpruned_best": unpruned, "target": target, "pruners": {}}
        for pruner in pruners:
            per_seed = []
            for seed in seeds:
                mine = task_rows(rows[pruner, seed], task)
                per_seed.append(
                    {
                        "seed": seed,
                        "best": best(mine),
                        "reached": compute_to_reach(mine, target),
                        "total_child_seconds": sum(child_seconds(row) for row in mine),
                        "total_wall_seconds": sum(row.wall_seconds for row in mine),
                        "pruned": sum(row.status == PRUNED for row in mine),
                        "trials": len(mine),
                    }
                )
            entry["pruners"][pruner] = per_seed
        base = [run["reached"] for run in entry["pruners"]["none"]]
        for pruner in pruners:
            for run, reference in zip(entry["pruners"][pruner], base, strict=True):
                if run["reached"] and reference:
                    run["speedup_seconds"] = reference["child_seconds"] / run["reached"]["child_seconds"]
                    run["speedup_epochs"] = reference["epochs"] / max(run["reached"]["epochs"], 1)
        entry["bias"] = {
            kind: [false_prunes(task_rows(rows["none", s], task), replayed[kind], max_epochs[s]) for s in seeds]
            for kind in ("asha", "median")
        }
        result["tasks"][task] = entry
    return result


def median_of(runs: list[dict], key: str) -> str:
    """The median over the seeds that have ``key`` (both searches reached the target), and how many those are."""
    values = [run[key] for run in runs if key in run]
    if not values:
        return "-"
    seeds = "" if len(values) == len(runs) else f" ({len(values)} of {len(runs)} seeds)"
    return f"{statistics.median(values):.2f}x{seeds}"


def markdown(result: dict, pruners: list[str]) -> str:
    lines = [
        "| task | unpruned best (seeds) | target | pruner | best (seeds) | trials pruned | child-s to target "
        "(seeds) | speed-up in child-s (median) | in epochs (median) | child-s for the whole budget |",
        "| --- | --- | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for task, entry in result["tasks"].items():
        for pruner in pruners:
            runs = entry["pruners"][pruner]
            reached = ", ".join(f"{r['reached']['child_seconds']:.0f}" if r["reached"] else "never" for r in runs)
            seconds, epochs = median_of(runs, "speedup_seconds"), median_of(runs, "speedup_epochs")
            lines.append(
                "| "
                + " | ".join(
                    [
                        task,
                        ", ".join(f"{b:.3f}" for b in entry["unpruned_best"]),
                        f"{entry['target']:.3f}",
                        pruner,
                        ", ".join(f"{r['best']:.3f}" for r in runs),
                        f"{sum(r['pruned'] for r in runs)} of {sum(r['trials'] for r in runs)}",
                        reached,
                        seconds,
                        epochs,
                        f"{statistics.median(r['total_child_seconds'] for r in runs):.0f}",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        "| task | replayed pruner | children stopped (of) | top-decile children stopped | compute saved | "
        "best child survives | Spearman, epoch-1 vs final accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task, entry in result["tasks"].items():
        for kind, runs in entry["bias"].items():
            runs = [run for run in runs if "would_stop" in run]
            lines.append(
                f"| {task} | {kind} | {sum(r['would_stop'] for r in runs)} ({sum(r['children'] for r in runs)}) | "
                f"{sum(r['top_decile_stopped'] for r in runs)} of {sum(r['top_decile'] for r in runs)} | "
                f"{statistics.median(r['compute_saved_fraction'] for r in runs):.0%} | "
                f"{sum(r['best_survives'] for r in runs)} of {len(runs)} | "
                f"{statistics.median(r['spearman_epoch1_final'] for r in runs):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pruners", nargs="+", default=["none", "asha", "median"])
    parser.add_argument("--trials-per-task", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "pruning")
    parser.add_argument("--analyse-only", action="store_true", help="report on the runs already in --out")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every search")
    args = parser.parse_args()
    if "none" not in args.pruners:
        parser.error("--pruners must include none, the reference")
    if not args.analyse_only:
        for seed in args.seeds:  # seed-major: a noisy stretch of the machine hits every pruner alike
            for pruner in args.pruners:
                train_search(
                    run_dir(args.out, pruner, seed),
                    "experiment=multitask",
                    f"tasks=[{','.join(args.tasks)}]",
                    f"search.trials={args.trials_per_task * len(args.tasks)}",
                    f"search.pruner={pruner}",
                    f"seed={seed}",
                    "logger=none",
                    *args.overrides,
                )
    result = {"command": " ".join(sys.argv), **analyse(args.out, args.tasks, args.seeds, args.pruners)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pruning-{'-'.join(args.pruners)}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, args.pruners))


if __name__ == "__main__":
    main()
