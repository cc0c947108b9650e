"""Atomic files, and the names of the files a run dir holds.

Every file mnms writes appears whole or not at all: it is written to a unique temporary
file beside its target, flushed and fsynced, then renamed over the target. A kill at any
instant leaves either the old file or the new one, and two processes writing the same
target never share a temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace ``path`` with what ``write`` writes into a binary file handle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """``payload`` as indented JSON with sorted keys (the format of every JSON file a run writes)."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def torch_save_atomic(path: str | Path, payload: Any) -> Path:
    """``torch.save(payload)`` into ``path``, atomically."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))


@dataclass(frozen=True)
class RunDir:
    """A run's folder and the files mnms keeps in it; the one place their names are written down."""

    TRIALS: ClassVar[str] = "trials.jsonl"  # every trial of a search, one JSON line each (the source of truth)
    CHECKPOINT: ClassVar[str] = "checkpoint.pt"  # what an exact resume needs
    SUMMARY: ClassVar[str] = "summary.json"  # a finished search's best architectures, or a failed job's error
    CONTROLLER: ClassVar[str] = "controller.pt"  # the trained controller, for transfer and proposals
    RESULT: ClassVar[str] = "result.json"  # what mode=child measured
    PROPOSALS: ClassVar[str] = "proposals.json"  # what mode=propose decoded
    HYDRA_CONFIG: ClassVar[str] = ".hydra/config.yaml"  # the composed config Hydra saved for the run

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def trials(self) -> Path:
        return self.path / self.TRIALS

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def controller(self) -> Path:
        return self.path / self.CONTROLLER

    @property
    def result(self) -> Path:
        return self.path / self.RESULT

    @property
    def proposals(self) -> Path:
        return self.path / self.PROPOSALS

    @property
    def hydra_config(self) -> Path:
        return self.path / self.HYDRA_CONFIG
