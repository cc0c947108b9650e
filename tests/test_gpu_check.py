"""bench.gpu_check: it skips cleanly without CUDA, and judges a GPU child against the CPU seeds' range."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from bench.gpu_check import TOLERANCE, within_cpu_range
from helpers.configs import ROOT

REFERENCE = {
    "runs": {"kind": [{"val_accuracy": a, "train_seconds": s} for a, s in ((0.80, 10), (0.82, 30), (0.84, 20))]}
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: the check runs for real")
def test_without_cuda_the_check_says_it_skipped_and_passes(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(tmp_path / "gpu.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["skipped"] == "torch sees no CUDA device" and result["ok"]


@pytest.mark.parametrize(
    ("accuracy", "device", "ok"),
    [
        (0.80 - TOLERANCE, "cuda", True),  # at the widened edge of the CPU seeds' range
        (0.84 + TOLERANCE + 0.001, "cuda", False),  # above it: not within noise
        (0.79, "cpu", False),  # within noise, but it never reached the GPU
    ],
)
def test_a_gpu_child_is_judged_by_the_cpu_seeds_range_and_its_device(accuracy, device, ok) -> None:
    gpu = {"val_accuracy": accuracy, "train_seconds": 2.0, "device": device}
    judged = within_cpu_range("kind", gpu, REFERENCE)
    assert judged["ok"] is ok
    assert judged["cpu_val_accuracy_range"] == pytest.approx([0.80, 0.84])
    assert judged["cpu_median_train_seconds"] == 20 and judged["gpu_over_cpu_train_seconds"] == 0.1
