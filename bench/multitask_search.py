"""Does one controller learn a different design per task? Multitask PPO against random search.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.multitask_search [--trials 320]

Runs ``train.py`` twice with the same tasks, seed, space and trial budget (PPO
multitask search, then random search), reads both runs' ``trials.jsonl`` and
``summary.json`` and writes ``bench/results/multitask_search.json`` plus a markdown
report on stdout for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mnms.records import read_trials

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TASKS = ("sst2", "trec", "french-allocine-tv", "langid-tatoeba")


def run_search(run_dir: Path, experiment: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "train.py", f"experiment={experiment}", f"tasks=[{','.join(args.tasks)}]",
        f"search.trials={args.trials}", f"seed={args.seed}", f"max_examples={args.max_examples}",
        "search.progress=false", f"hydra.run.dir={run_dir}", *args.overrides,
    ]
    subprocess.run(command, cwd=ROOT, check=True)
    return json.loads((run_dir / "summary.json").read_text())


def encoder_shares(rows: list[dict], task: str, last: int) -> dict[str, float]:
    """Share of each encoder among the task's last ``last`` trials."""
    encoders = [row["arch"]["encoder"] for row in rows if row["task"] == task][-last:]
    counts = Counter(encoders)
    return {encoder: counts[encoder] / len(encoders) for encoder in sorted(counts)}


def best_after(rows: list[dict], task: str, n: int) -> float:
    rewards = [row["reward"] for row in rows if row["task"] == task][:n]
    return max(rewards) if rewards else float("nan")


def mean_reward(rows: list[dict], task: str, part: slice) -> float:
    rewards = [row["reward"] for row in rows if row["task"] == task][part]
    return sum(rewards) / len(rewards)


def markdown(result: dict) -> str:
    lines = ["| task | PPO: final P(encoder) | PPO: encoders of last 24 trials | PPO best val | random best val |",
             "| --- | --- | --- | ---: | ---: |"]
    for task, row in result["tasks"].items():
        probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["final_encoder_probabilities"].items(),
                                                             key=lambda kv: -kv[1]))
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(row["ppo_last_encoders"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {task} | {probs} | {shares} | {row['ppo_best_val']:.4f} | {row['random_best_val']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--trials", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-examples", default="2000")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "multitask_search")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()

    ppo = run_search(args.out / "ppo", "multitask", args)
    random = run_search(args.out / "random", "random", args)
    ppo_rows, random_rows = read_trials(args.out / "ppo"), read_trials(args.out / "random")
    result = {
        "command": " ".join(sys.argv),
        "trials": args.trials,
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
                "ppo_best_after": {n: best_after(ppo_rows, task, n) for n in (10, 25, 50, 80)},
                "random_best_after": {n: best_after(random_rows, task, n) for n in (10, 25, 50, 80)},
            }
            for task in args.tasks
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multitask_search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\ncontroller + records + tracking overhead: {ppo['overhead_fraction']:.2%} of the PPO search's time")


if __name__ == "__main__":
    main()
