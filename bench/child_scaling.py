"""What a child costs on 2 cores, and how that grows with the number of training examples.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.child_scaling [--task airline-sentiment]

Trains each kind of child of the default space (``bench.child_overhead.CHILDREN``) for
``--epochs`` epochs on the task capped at each size (stratified, seeded; validation and
test capped alike), one thread as in a search, features cached beforehand, and reports
seconds per epoch. Writes bench/results/child_scaling.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.child_overhead import CHILDREN
from lightning_modules.trainer import evaluate_child
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="airline-sentiment")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 20000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cache-dir", default=".cache/mnms")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cache = FeatureCache(args.cache_dir)
    trainer_cfg = ChildTrainerConfig(max_epochs=args.epochs, patience=None)
    runs = []
    for size in args.sizes:
        task = load_task(args.task, max_examples=size, seed=0)
        for name, fields in CHILDREN.items():
            arch = Architecture(**fields)
            evaluate_child(task, arch, ChildTrainerConfig(max_epochs=1, max_steps=1), cache, seed=0)  # cache features
            result = evaluate_child(task, arch, trainer_cfg, cache, seed=0)
            runs.append(
                {
                    "child": name,
                    "train_examples": len(task.splits["train"]),
                    "seconds_per_epoch": result.train_seconds / result.epochs,
                    "val_accuracy": result.val_accuracy,
                }
            )
            print(
                f"{name:>45} {runs[-1]['train_examples']:>6}: {runs[-1]['seconds_per_epoch']:.2f} s/epoch", flush=True
            )
    RESULTS.mkdir(exist_ok=True)
    result = {"task": args.task, "epochs": args.epochs, "torch_threads": 1, "runs": runs}
    (RESULTS / "child_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    sizes = sorted({r["train_examples"] for r in runs})
    print("\n| child | " + " | ".join(f"{n} examples" for n in sizes) + " |")
    print("| --- |" + " ---: |" * len(sizes))
    for name in CHILDREN:
        cells = [f"{r['seconds_per_epoch']:.2f}" for r in runs if r["child"] == name]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
