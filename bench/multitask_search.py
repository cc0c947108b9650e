"""Does one controller learn a different design per task? Multitask PPO against random search.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.multitask_search [--trials 400] [--seeds 0 1 2]

Runs ``train.py`` twice per seed with the same tasks, space and trial budget (PPO
multitask search and random search), two searches at a time, reads the runs'
``trials.jsonl`` and ``summary.json`` and writes ``bench/results/multitask_search.json``
plus a markdown table on stdout for docs/benchmarks.md. Finished runs are kept and
reused, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.runs import RESULTS, ROOT, train_search
from mnms.search.records import TrialRecord, read_trials
from mnms.utils.io import RunDir

TASKS = ("sst2", "trec", "french-allocine-tv", "langid-tatoeba")


def run_search(run_dir: Path, experiment: str, seed: int, args: argparse.Namespace) -> None:
    train_search(
        run_dir,
        f"experiment={experiment}",
        f"tasks=[{','.join(args.tasks)}]",
        f"search.trials={args.trials}",
        f"seed={seed}",
        f"max_examples={args.max_examples}",
        *args.overrides,
    )


def encoder_shares(rows: list[TrialRecord], task: str, last: int) -> dict[str, float]:
    """Share of each encoder among the task's last ``last`` trials."""
    encoders = [row.arch["encoder"] for row in rows if row.task == task][-last:]
    counts = Counter(encoders)
    return {encoder: counts[encoder] / len(encoders) for encoder in sorted(counts)}


def best_after(rows: list[TrialRecord], task: str, n: int) -> float:
    rewards = [row.reward for row in rows if row.task == task][:n]
    return max(rewards) if rewards else float("nan")


def mean_reward(rows: list[TrialRecord], task: str, part: slice) -> float:
    rewards = [row.reward for row in rows if row.task == task][part]
    return sum(rewards) / len(rewards)


def seed_result(ppo_dir: Path, random_dir: Path, tasks: list[str]) -> dict:
    """One seed's PPO and random runs, read back from their summary.json and trials.jsonl."""
    ppo, random = (json.loads(RunDir(d).summary.read_text()) for d in (ppo_dir, random_dir))
    ppo_rows, random_rows = read_trials(ppo_dir), read_trials(random_dir)
    return {
        "ppo_overhead_fraction": ppo["overhead_fraction"],
        "ppo_seconds": ppo["seconds"],
        "tasks": {
            task: {
                "final_encoder_probabilities": ppo["choice_probabilities"][task]["encoder"],
                "ppo_last_encoders": encoder_shares(ppo_rows, task, 24),
                "ppo_best_val": ppo["best"][task]["reward"],
                "ppo_best_test": ppo["best"][task]["metrics"]["test_accuracy"],
                "random_best_val": random["best"][task]["reward"],
                "random_best_test": random["best"][task]["metrics"]["test_accuracy"],
                "ppo_mean_reward_first20": mean_reward(ppo_rows, task, slice(None, 20)),
                "ppo_mean_reward_last20": mean_reward(ppo_rows, task, slice(-20, None)),
                "random_mean_reward": mean_reward(random_rows, task, slice(None)),
                "ppo_best_after": {n: best_after(ppo_rows, task, n) for n in (10, 25, 50, 100)},
                "random_best_after": {n: best_after(random_rows, task, n) for n in (10, 25, 50, 100)},
            }
            for task in tasks
        },
    }


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def markdown(seeds: dict[int, dict], tasks: list[str]) -> str:
    """Per task: PPO's final encoder probabilities (mean over seeds), each seed's top encoder,
    best validation accuracy of PPO and random, and PPO's late mean reward against random's."""
    lines = [
        "| task | PPO final P(encoder), mean over seeds | top encoder per seed | PPO best val | "
        "random best val | PPO mean reward, last 20 | random mean reward |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for task in tasks:
        rows = [seed["tasks"][task] for seed in seeds.values()]
        encoders = rows[0]["final_encoder_probabilities"]
        mean_p = {e: statistics.mean(r["final_encoder_probabilities"][e] for r in rows) for e in encoders}
        probs = ", ".join(f"{e} {p:.2f}" for e, p in sorted(mean_p.items(), key=lambda kv: -kv[1]))
        tops = ", ".join(max(r["final_encoder_probabilities"].items(), key=lambda kv: kv[1])[0] for r in rows)
        cells = [
            task,
            probs,
            tops,
            *(
                mean_std([r[key] for r in rows])
                for key in ("ppo_best_val", "random_best_val", "ppo_mean_reward_last20", "random_mean_reward")
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="searches at a time (each trains on one core)")
    parser.add_argument("--max-examples", default="2000")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "multitask_search")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    runs = [
        (args.out / f"seed{seed}" / name, experiment, seed)
        for seed in args.seeds
        for experiment, name in (("multitask", "ppo"), ("random", "random"))
    ]
    with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on train.py subprocesses
        list(pool.map(lambda run: run_search(*run, args), runs))
    seeds = {
        seed: seed_result(args.out / f"seed{seed}" / "ppo", args.out / f"seed{seed}" / "random", args.tasks)
        for seed in args.seeds
    }
    overhead = statistics.median(seed["ppo_overhead_fraction"] for seed in seeds.values())
    result = {
        "command": " ".join(sys.argv),
        "trials": args.trials,
        "jobs": args.jobs,
        "median_ppo_overhead_fraction": overhead,
        "seeds": seeds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multitask_search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(seeds, args.tasks))
    print(f"\ncontroller + records + tracking overhead: {overhead:.2%} of a PPO search's time (median over seeds)")


if __name__ == "__main__":
    main()
