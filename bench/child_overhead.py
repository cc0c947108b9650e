"""Lightning's overhead on a child: the same child fitted by a Trainer and by a plain loop.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.child_overhead [--repeats 5]

Both fits start from identical weights and identical in-memory batches, validate after
every epoch and keep a copy of the best epoch's weights (what a child does), alternate
in one process (the machine is noisy, so only side-by-side ratios mean anything) and
report medians. The children are kinds of the default wide & deep space, on the whole
task. Writes bench/results/child_overhead.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from bench.runs import RESULTS
from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import TaskDataModule
from lightning_modules.trainer import BestEpoch, build_classifier, build_trainer, quiet_lightning
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.inputs import child_inputs
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import SPLITS, load_task

# Kinds of child in the default space, cheapest first.
CHILDREN = {
    "minilm + wide words": {"encoder": "minilm", "wide": "words"},
    "fr-vectors, fine-tuned table": {"encoder": "fr-vectors", "fine_tune": True},
    "words, conv 64 x widths 1-3, max pooling": {"encoder": "words", "conv_filters": 64, "pooling": "max"},
    "minilm, top layer fine-tuned": {"encoder": "minilm", "fine_tune_layers": 1},
}


def plain_fit(model: ChildClassifier, data: TaskDataModule, epochs: int) -> None:
    """The textbook PyTorch loop Lightning replaces: train, validate each epoch, keep the best weights."""
    optimizer = model.configure_optimizers()
    best, state = -1.0, None
    for _ in range(epochs):
        model.train()
        for batch in data.train_dataloader():
            loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            right = sum(int((model(b).argmax(-1) == b["label"]).sum()) for b in data.val_dataloader())
        if right > best:
            best, state = right, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def measure(task, cache: FeatureCache, name: str, fields: dict, epochs: int, repeats: int) -> dict:
    """Median seconds of ``repeats`` alternating (Lightning, plain) fits from identical weights."""
    arch = Architecture(**fields)
    inputs = child_inputs(task, arch, cache)
    labels = {s: torch.tensor(task.splits[s].labels, dtype=torch.long) for s in SPLITS}
    torch.manual_seed(0)
    template = build_classifier(arch, inputs, task.num_classes)
    trainer_cfg = ChildTrainerConfig(max_epochs=epochs, patience=None)  # the same epochs in both

    def timed(fit) -> float:
        model = copy.deepcopy(template)
        data = TaskDataModule(inputs.splits, labels, arch.batch_size, seed=0)
        started = time.perf_counter()
        fit(model, data)
        return time.perf_counter() - started

    def lightning_fit(model, data) -> None:
        build_trainer(trainer_cfg, BestEpoch()).fit(model, datamodule=data)

    def plain(model, data) -> None:
        plain_fit(model, data, epochs)

    timed(lightning_fit), timed(plain)  # warm-up: first-call allocations and lazy imports
    pairs = [(timed(lightning_fit), timed(plain)) for _ in range(repeats)]
    ratios = [lit / ref for lit, ref in pairs]
    steps = epochs * len(TaskDataModule(inputs.splits, labels, arch.batch_size, 0).train_dataloader())
    return {
        "child": name,
        "arch": fields,
        "steps": steps,
        "lightning_median_s": statistics.median(p[0] for p in pairs),
        "plain_median_s": statistics.median(p[1] for p in pairs),
        "median_ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--children", nargs="+", default=list(CHILDREN), choices=list(CHILDREN))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-dir", default=".cache/mnms")
    args = parser.parse_args()

    quiet_lightning()
    torch.set_num_threads(1)  # as a search's child (trainer.threads=1)
    task = load_task(args.task)
    cache = FeatureCache(args.cache_dir)
    result = {
        "task": task.name,
        "train_examples": len(task.splits["train"].texts),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "runs": [measure(task, cache, name, CHILDREN[name], args.epochs, args.repeats) for name in args.children],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "child_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    for run in result["runs"]:
        print(
            f"| {run['child']} | {run['steps']} | {run['lightning_median_s']:.2f} | "
            f"{run['plain_median_s']:.2f} | {run['median_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
