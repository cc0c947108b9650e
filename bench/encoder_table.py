"""Does the encoder choice matter? One fixed child per (task, encoder), validation accuracy.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.encoder_table

Writes bench/results/encoder_table.json and prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json

from rich.progress import track

from bench.runs import RESULTS
from lightning_modules.trainer import evaluate_child
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.encoders import ENCODERS
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task

# English sentiment, question type and spam; French and Spanish sentiment; language ID.
TASKS = ("sst2", "trec", "sms-spam", "french-allocine-tv", "spanish-airline-tweets", "langid-tatoeba")


def markdown(rows: dict[str, dict[str, float]], languages: dict[str, str]) -> str:
    header = "| task | lang | " + " | ".join(ENCODERS) + " |"
    lines = [header, "|" + " --- |" * (len(ENCODERS) + 2)]
    for task, scores in rows.items():
        best = max(scores.values())
        cells = [f"**{scores[e]:.3f}**" if scores[e] == best else f"{scores[e]:.3f}" for e in ENCODERS]
        lines.append(f"| {task} | {languages[task]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--cache-dir", default=".cache/mnms")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cache = FeatureCache(args.cache_dir)
    trainer_cfg = ChildTrainerConfig(max_epochs=args.epochs)
    rows: dict[str, dict[str, float]] = {}
    languages: dict[str, str] = {}
    jobs = [(t, e) for t in args.tasks for e in ENCODERS]
    tasks = {}
    for task_name, encoder in track(jobs, description="children"):
        task = tasks.setdefault(task_name, load_task(task_name))
        arch = Architecture(encoder=encoder, learning_rate=args.learning_rate)
        result = evaluate_child(task, arch, trainer_cfg, cache, seed=args.seed)
        rows.setdefault(task_name, {})[encoder] = result.val_accuracy
        languages[task_name] = task.language
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "child": Architecture(learning_rate=args.learning_rate).to_dict(),
        "val_accuracy": rows,
    }
    (RESULTS / "encoder_table.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(markdown(rows, languages))


if __name__ == "__main__":
    main()
