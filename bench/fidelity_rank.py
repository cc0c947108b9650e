"""Do rewards at a few hundred or thousand examples rank children as whole-task training does?

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.fidelity_rank run [--shard 0/2]
    .venv/bin/python -m bench.fidelity_rank report

Every study of mnms at 500 or 1,000 examples per split, the tabular benchmark, and the
fidelity over training data of the cost issue assume that a child's validation accuracy
at a small fidelity ranks children as their accuracy on the whole task would. ``run``
trains ``--archs`` architectures of the tabular benchmark's space (the same ones,
drawn once with a fixed seed) on each of ``TASKS`` at every fidelity of ``FIDELITIES``
(``max_examples`` per split, drawn as the benchmark draws them; ``None`` is the whole
task), with child seed 0, and at the whole task once more with seed 1: how well the
whole task ranks itself from one seed to another is the ceiling a small fidelity can
reach. Each run is appended to ``outputs/bench/fidelity/runs-<shard>.jsonl`` as it
finishes, so a killed run resumes where it stopped.

``report`` writes ``bench/results/fidelity_rank.json`` and prints, per task and
fidelity, Spearman's rank correlation of validation accuracy with the whole task's
(seed 0), whether the whole task's best architecture is among the fidelity's top 5,
the whole task's accuracy of the fidelity's pick, and the median training seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.runs import RESULTS, ROOT
from bench.tabular import Benchmark
from mnms.child.arch import Architecture, complete_arch
from mnms.child.config import ChildTrainerConfig
from mnms.executors.trial import OK, TrialRequest
from mnms.search.table import arch_key

TASKS = ("sst2", "airline-sentiment", "langid-tatoeba")  # English sentiment (two sizes and styles), language ID
FIDELITIES: tuple[int | None, ...] = (500, 1000, 2000, None)
ARCH_SEED = 0
OUT = ROOT / "outputs" / "bench" / "fidelity"
RESULT = RESULTS / "fidelity_rank.json"


def architectures(count: int) -> list[dict[str, Any]]:
    """``count`` architectures of the tabular space, drawn without replacement with ``ARCH_SEED``."""
    space = Benchmark.load().space()
    return random.Random(ARCH_SEED).sample(list(space.architectures()), count)


def plan(count: int) -> list[tuple[str, int | None, int, dict[str, Any]]]:
    """Every (task, fidelity, child seed, architecture) the study trains: seed 0, and seed 1 at the whole task."""
    runs = []
    for task in TASKS:
        for fidelity, seed in [*((f, 0) for f in FIDELITIES), (None, 1)]:
            runs += [(task, fidelity, seed, arch) for arch in architectures(count)]
    return runs


def recorded() -> Iterator[dict[str, Any]]:
    """Every run appended so far (a line cut short by a kill is skipped)."""
    for path in sorted(OUT.glob("runs-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def identity(task: str, fidelity: int | None, seed: int, arch: dict[str, Any]) -> tuple[str, str, int, str]:
    return task, str(fidelity), seed, arch_key(arch)


def run(count: int, shard: int, shards: int, cache_dir: Path) -> None:
    from mnms.executors.runner import ChildRunner  # torch and Lightning: only where children train

    bench = Benchmark.load()
    done = {identity(r["task"], r["fidelity"], r["seed"], r["arch"]) for r in recorded()}
    todo = [item for item in plan(count)[shard::shards] if identity(*item) not in done]
    OUT.mkdir(parents=True, exist_ok=True)
    runners: dict[tuple[str, int | None], ChildRunner] = {}
    defaults = Architecture().to_dict()
    started = time.perf_counter()
    with (OUT / f"runs-{shard}.jsonl").open("a") as out:
        for number, (task, fidelity, seed, arch) in enumerate(todo, start=1):
            if (task, fidelity) not in runners:
                data = dataclasses.replace(bench, max_examples=fidelity).load_task(task)
                runners[(task, fidelity)] = ChildRunner({task: data}, ChildTrainerConfig(), str(cache_dir))
                runners[(task, fidelity)].prepare_process()
            outcome = runners[(task, fidelity)](TrialRequest(number, task, complete_arch(arch, defaults), seed))
            record = {"task": task, "fidelity": fidelity, "seed": seed, "arch": arch, "status": outcome.status}
            record |= {"metrics": outcome.metrics, "error": outcome.error}
            out.write(json.dumps(record) + "\n")
            out.flush()
            if number % 20 == 0 or number == len(todo):
                elapsed = time.perf_counter() - started
                print(f"[shard {shard}] {number}/{len(todo)}, {elapsed:.0f} s", file=sys.stderr)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            result[i] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's of the (tie-averaged) ranks."""
    return statistics.correlation(ranks(x), ranks(y))


def scores(count: int) -> dict[str, Any]:
    """Per task and fidelity: Spearman with the whole task, top-5 hit, the pick's whole-task accuracy, seconds."""
    runs = {identity(r["task"], r["fidelity"], r["seed"], r["arch"]): r for r in recorded()}
    keys = [arch_key(arch) for arch in architectures(count)]

    def accuracy(task: str, fidelity: int | None, seed: int) -> list[float]:
        found = [runs.get((task, str(fidelity), seed, key)) for key in keys]
        if any(run is None for run in found):
            where = "the whole task" if fidelity is None else f"{fidelity} examples"
            raise SystemExit(f"{task} at {where} (seed {seed}) is incomplete: run `python -m bench.fidelity_rank run`")
        return [run["metrics"].get("val_accuracy", 0.0) if run["status"] == OK else 0.0 for run in found]

    def seconds(task: str, fidelity: int | None, seed: int) -> float:
        return statistics.median(
            runs[(task, str(fidelity), seed, key)]["metrics"].get("train_seconds", 0.0) for key in keys
        )

    result: dict[str, Any] = {"archs": count, "arch_seed": ARCH_SEED, "tasks": {}}
    for task in TASKS:
        whole = accuracy(task, None, 0)
        best = max(range(count), key=whole.__getitem__)
        rows = {}
        for label, fidelity, seed in [
            *((str(f), f, 0) for f in FIDELITIES if f is not None),
            ("whole, seed 1", None, 1),
        ]:
            small = accuracy(task, fidelity, seed)
            top5 = sorted(range(count), key=lambda i: -small[i])[:5]
            pick = top5[0]
            rows[label] = {
                "spearman": round(spearman(small, whole), 3),
                "best_in_top5": best in top5,
                "pick_regret": round(100 * (whole[best] - whole[pick]), 2),
                "median_train_seconds": round(seconds(task, fidelity, seed), 2),
            }
        rows["whole"] = {"median_train_seconds": round(seconds(task, None, 0), 2)}
        result["tasks"][task] = rows
    return result


def markdown(result: dict[str, Any]) -> str:
    labels = [str(f) for f in FIDELITIES if f is not None] + ["whole, seed 1"]
    lines = [
        f"Spearman of validation accuracy with the whole task's (seed 0), {result['archs']} architectures per task; "
        "in brackets the whole-task regret (points) of the fidelity's best pick, and * where the whole task's best "
        "is in the fidelity's top 5:",
        "",
        "| task | " + " | ".join(f"{label} examples" if label[0].isdigit() else label for label in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for task, rows in result["tasks"].items():
        cells = [
            f"{row['spearman']:.2f} [{row['pick_regret']:.1f}]{'*' if row['best_in_top5'] else ''}"
            for row in (rows[label] for label in labels)
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "Median training seconds per child:", ""]
    shown = [*labels[:-1], "whole"]
    lines += ["| task | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
    for task, rows in result["tasks"].items():
        lines.append(
            f"| {task} | " + " | ".join(f"{rows[label]['median_train_seconds']:.1f}" for label in shown) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["run", "report"])
    parser.add_argument("--archs", type=int, default=60)
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th run, starting at the i-th (one per core)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "features")
    args = parser.parse_args()
    if args.step == "run":
        shard, shards = (int(part) for part in args.shard.split("/"))
        run(args.archs, shard, shards, args.cache_dir)
        return
    result = scores(args.archs)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
