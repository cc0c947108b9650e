"""Running ``train.py`` searches from a benchmark: resumed where interrupted, skipped where finished.

Every long benchmark is a set of searches, each in its own run dir under ``outputs/bench``;
a rerun after a kill only does what is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mnms.utils.io import RunDir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def train_search(run_dir: Path, *overrides: str) -> None:
    """``train.py`` with ``overrides`` in ``run_dir``; resumed if it has records but no summary, skipped if done."""
    if RunDir(run_dir).summary.is_file():
        return
    resume = [f"resume={run_dir}"] if RunDir(run_dir).trials.is_file() else []
    command = [sys.executable, "train.py", "search.progress=false", f"hydra.run.dir={run_dir}", *overrides, *resume]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
