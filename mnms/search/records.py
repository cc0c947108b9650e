"""The search's source of truth: an append-only trial log and an atomic checkpoint.

W&B mirrors these; nothing is ever reconstructed from W&B. Both survive SIGKILL at
any instant: each trial is one flushed, fsynced JSON line (a torn last line is
dropped on reopen), and the checkpoint is replaced atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from mnms.utils.io import RunDir, torch_save_atomic

TRIALS_FILE = RunDir.TRIALS
CHECKPOINT_FILE = RunDir.CHECKPOINT


class TrialLog:
    """``trials.jsonl``: one JSON object per trial, in trial order."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / TRIALS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = self._read_and_repair()
        self._file = self.path.open("a", encoding="utf-8")

    def _read_and_repair(self) -> list[dict[str, Any]]:
        """Read every complete line; truncate a line torn by a kill mid-write."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        rows = [json.loads(line) for line in io.StringIO(complete.decode("utf-8")) if line.strip()]
        for expected, row in enumerate(rows):
            if row.get("trial") != expected:
                raise ValueError(
                    f"{self.path} line {expected + 1} has trial={row.get('trial')!r}, expected {expected}: "
                    "the log was edited by hand; restore it or start a new run dir"
                )
        return rows

    def append(self, row: dict[str, Any]) -> None:
        if row["trial"] != len(self.rows):
            raise ValueError(f"trial {row['trial']} appended after {len(self.rows)} rows; trials must be in order")
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def close(self) -> None:
        self._file.close()


def read_trials(run_dir: Path) -> list[dict[str, Any]]:
    """The complete trial rows of a run dir, or of a trials file (read-only; a torn last line is ignored)."""
    path = Path(run_dir) / TRIALS_FILE if Path(run_dir).is_dir() else Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a search run dir?")
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    torch_save_atomic(Path(run_dir) / CHECKPOINT_FILE, state)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    # weights_only=False: the state holds RNG states and plain Python records we wrote ourselves.
    return torch.load(path, map_location="cpu", weights_only=False)
