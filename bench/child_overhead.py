"""Lightning's overhead on a child: the same child fitted by a Trainer and by a plain loop.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.child_overhead [--repeats 7]

Both fits start from identical weights and identical in-memory batches, alternate in
one process (the machine is noisy, so only side-by-side ratios mean anything) and
report medians. Writes bench/results/child_overhead.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import TaskDataModule
from lightning_modules.trainer import build_trainer, quiet_lightning
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.encoders import get_encoder
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import SPLITS, load_task

RESULTS = Path(__file__).parent / "results"


def plain_fit(model: ChildClassifier, data: TaskDataModule, epochs: int) -> None:
    """The textbook PyTorch loop Lightning replaces."""
    optimizer = model.configure_optimizers()
    model.train()
    for _ in range(epochs):
        for batch in data.train_dataloader():
            loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def measure(encoded, labels, num_classes: int, encoder: str, batch_size: int, epochs: int, repeats: int) -> dict:
    """Median seconds of ``repeats`` alternating (Lightning, plain) fits from identical weights."""
    arch = Architecture(encoder=encoder, batch_size=batch_size)
    torch.manual_seed(0)
    template = ChildClassifier(arch, encoded.make_input_layer(), encoded.dim, num_classes)
    trainer_cfg = ChildTrainerConfig(max_epochs=epochs)

    def timed(fit) -> float:
        model = copy.deepcopy(template)
        data = TaskDataModule(encoded.splits, labels, batch_size, seed=0)
        started = time.perf_counter()
        fit(model, data)
        return time.perf_counter() - started

    def lightning_fit(model, data) -> None:
        build_trainer(trainer_cfg).fit(model, datamodule=data)

    def plain(model, data) -> None:
        plain_fit(model, data, epochs)

    timed(lightning_fit), timed(plain)  # warm-up: first-call allocations and lazy imports
    pairs = [(timed(lightning_fit), timed(plain)) for _ in range(repeats)]
    ratios = [lit / ref for lit, ref in pairs]
    steps = epochs * len(TaskDataModule(encoded.splits, labels, batch_size, 0).train_dataloader())
    return {
        "encoder": encoder,
        "batch_size": batch_size,
        "steps": steps,
        "lightning_median_s": statistics.median(p[0] for p in pairs),
        "plain_median_s": statistics.median(p[1] for p in pairs),
        "median_ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--encoders", nargs="+", default=["minilm", "words"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache-dir", default=".cache/mnms")
    args = parser.parse_args()

    quiet_lightning()
    task = load_task(args.task)
    cache = FeatureCache(args.cache_dir)
    labels = {s: torch.tensor(task.splits[s].labels, dtype=torch.long) for s in SPLITS}
    result = {
        "task": task.name,
        "child": "default Architecture (1 x 256 relu, dropout 0.1, adam 1e-3) per encoder and batch size",
        "train_examples": len(task.splits["train"].texts),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "runs": [
            measure(
                get_encoder(e).encode(task, fine_tune=False, pooling="mean", cache=cache),
                labels,
                task.num_classes,
                e,
                b,
                args.epochs,
                args.repeats,
            )
            for e in args.encoders
            for b in args.batch_sizes
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "child_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    for run in result["runs"]:
        print(
            f"{run['encoder']:>12} batch {run['batch_size']:>4}: {run['steps']} steps  "
            f"Lightning {run['lightning_median_s']:.3f}s  "
            f"plain {run['plain_median_s']:.3f}s  median ratio {run['median_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
