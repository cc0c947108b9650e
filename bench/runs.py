"""Running ``train.py`` searches from a benchmark: resumed where interrupted, skipped where finished.

Every long benchmark is a set of searches, each in its own run dir under ``outputs/bench``;
a rerun after a kill only does what is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mnms.utils.io import RunDir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def search_ended(run_dir: Path) -> bool:
    """Whether the search in ``run_dir`` ended: a summary that is not an interrupted search's best so far."""
    summary = RunDir(run_dir).summary
    return summary.is_file() and json.loads(summary.read_text()).get("status") != "interrupted"


def train_search(run_dir: Path, *overrides: str) -> None:
    """``train.py`` with ``overrides`` in ``run_dir``; resumed if it has records but did not end, skipped if done."""
    if search_ended(run_dir):
        return
    resume = [f"resume={run_dir}"] if RunDir(run_dir).trials.is_file() else []
    command = [sys.executable, "train.py", "search.progress=false", f"hydra.run.dir={run_dir}", *overrides, *resume]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
