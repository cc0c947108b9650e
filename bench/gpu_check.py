"""GPU children measured on a real GPU, against CPU runs of the same children recorded here.

    # on the development machine, once (about 10 minutes on 2 cores): the CPU references
    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.gpu_check --record-cpu
    # on the GPU machine (at most 4 minutes on one modern GPU; see docs/gpu.md for the set-up)
    MNMS_DATA_DIR=<datasets> python -m bench.gpu_check --out $OUT/gpu_check.json

Checks, each a pass or a failure with its numbers, all written as JSON; the exit status is
1 when any fails, and 0 with ``"skipped"`` when torch sees no CUDA device (so the script
runs, and is tested, on a CPU machine):

1. the CUDA-only tests (``pytest -m "not slow"`` selects them by name, below);
2. one child of each kind (bags, sentence vectors, convolution, MiniLM top layers, MiniLM
   fully fine-tuned) on the GPU with the seed and data of the CPU references: its
   validation accuracy within the CPU seeds' range widened by ``TOLERANCE``, and the
   GPU/CPU ratio of training seconds;
3. bf16 mixed precision (``trainer.precision=bf16-mixed``) on the fully fine-tuned child,
   within the same range;
4. a 24-trial search through ``train.py`` with four local workers sharing the GPU: every
   trial recorded, ok, and trained on ``cuda``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.runs import RESULTS
from lightning_modules.trainer import evaluate_child
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = RESULTS / "gpu_cpu_reference.json"
TASK, EXAMPLES, EPOCHS = "trec", 1000, 3  # whole epochs of a 1,000-example trec: seconds on a GPU
SEEDS = (0, 1, 2)  # CPU seeds; the GPU trains seed 0
TOLERANCE = 0.01  # a GPU accuracy may lie this far outside the CPU seeds' range (1 point)
KINDS = {
    "bags: words, wide chars": Architecture(encoder="words", wide="chars"),
    "sentence vectors: frozen MiniLM": Architecture(encoder="minilm"),
    "convolution: words, 64 filters x widths 1-3, max": Architecture(encoder="words", conv_filters=64, pooling="max"),
    "MiniLM, top 2 layers fine-tuned": Architecture(encoder="minilm", fine_tune_layers=2, learning_rate=1e-4),
    "MiniLM, fully fine-tuned": Architecture(encoder="minilm", fine_tune_layers=6, learning_rate=5e-5),
}
MIXED = "MiniLM, fully fine-tuned"
CUDA_TESTS = [
    "tests/test_gpu_children.py::test_local_workers_train_on_the_gpu_they_were_given",
    "tests/test_wide_deep.py::test_a_child_trains_on_the_gpu",
]
SEARCH = [  # four children at a time on one GPU, through the local executor
    "tasks=[trec]",
    "search_space=small",
    "search.trials=24",
    "search.batch_size=4",
    f"max_examples={EXAMPLES}",
    "executor=local",
    "executor.workers=4",
    "executor.gpus=[0]",
    "trainer.accelerator=gpu",
    "logger=none",
]


def train(arch: Architecture, seed: int, cache: FeatureCache, **trainer: Any) -> dict[str, Any]:
    """One child on the benchmark's data: its accuracies, training seconds and device."""
    task = load_task(TASK, None, max_examples=EXAMPLES, seed=0)
    result = evaluate_child(task, arch, ChildTrainerConfig(max_epochs=EPOCHS, **trainer), cache, seed=seed)
    return {
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_seconds": result.train_seconds,
        "device": result.device,
    }


def record_cpu(cache: FeatureCache) -> dict[str, Any]:
    """Every kind, every seed, on the CPU: the references the GPU run is judged against."""
    runs = {name: [train(arch, seed, cache, accelerator="cpu") for seed in SEEDS] for name, arch in KINDS.items()}
    return {"machine": machine(), "task": TASK, "examples": EXAMPLES, "epochs": EPOCHS, "seeds": SEEDS, "runs": runs}


def within_cpu_range(name: str, gpu: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    cpu = reference["runs"][name]
    low = min(run["val_accuracy"] for run in cpu) - TOLERANCE
    high = max(run["val_accuracy"] for run in cpu) + TOLERANCE
    seconds = sorted(run["train_seconds"] for run in cpu)[len(cpu) // 2]
    return {
        **gpu,
        "cpu_val_accuracy_range": [low + TOLERANCE, high - TOLERANCE],
        "cpu_median_train_seconds": seconds,
        "gpu_over_cpu_train_seconds": gpu["train_seconds"] / seconds,
        "ok": gpu["device"] == "cuda" and low <= gpu["val_accuracy"] <= high,
    }


def cuda_tests() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *CUDA_TESTS], cwd=ROOT, capture_output=True, text=True)
    return {"ok": done.returncode == 0, "output_tail": (done.stdout + done.stderr)[-1500:]}


def shared_gpu_search(run_dir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "train.py", *SEARCH, f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    trials = (
        [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
        if done.returncode == 0
        else []
    )
    devices = sorted({row["metrics"].get("device") for row in trials if row["status"] == "ok"})
    ok = done.returncode == 0 and len(trials) == 24 and all(row["status"] == "ok" for row in trials)
    return {
        "ok": ok and devices == ["cuda"],
        "wall_seconds": wall,
        "trials": len(trials),
        "statuses": sorted({row["status"] for row in trials}),
        "devices": devices,
        "child_train_seconds": sum(row["metrics"].get("train_seconds", 0.0) for row in trials),
        "stderr_tail": done.stderr[-1500:] if done.returncode else "",
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
    }


def check(cache: FeatureCache, scratch: Path) -> dict[str, Any]:
    reference = json.loads(REFERENCE.read_text())
    result: dict[str, Any] = {"machine": machine(), "reference_machine": reference["machine"]}
    result["cuda_tests"] = cuda_tests()
    result["children"] = {
        name: within_cpu_range(name, train(arch, 0, cache, accelerator="gpu"), reference)
        for name, arch in KINDS.items()
    }
    mixed = train(KINDS[MIXED], 0, cache, accelerator="gpu", precision="bf16-mixed")
    result["bf16_mixed"] = {"child": MIXED, **within_cpu_range(MIXED, mixed, reference)}
    result["shared_gpu_search"] = shared_gpu_search(scratch / "search")
    parts = [result["cuda_tests"], *result["children"].values(), result["bf16_mixed"], result["shared_gpu_search"]]
    result["ok"] = all(part["ok"] for part in parts)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--record-cpu", action="store_true", help=f"record the CPU references into {REFERENCE}")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        cache = FeatureCache(Path(scratch) / "cache")  # no feature cached beforehand, on either machine
        if args.record_cpu:
            REFERENCE.write_text(json.dumps(record_cpu(cache), indent=2) + "\n")
            print(f"CPU references: {REFERENCE}")
            return 0
        if not torch.cuda.is_available():
            result: dict[str, Any] = {"skipped": "torch sees no CUDA device", "machine": machine(), "ok": True}
        else:
            result = check(cache, Path(scratch))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
