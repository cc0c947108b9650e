"""Atomic files, and the names of the files a run dir holds.

Every file mnms writes appears whole or not at all: it is written to a unique temporary
file beside its target, flushed and fsynced, then renamed over the target. A kill at any
instant leaves either the old file or the new one, and two processes writing the same
target never share a temporary file.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch

from mnms.utils.faults import kill_point

try:
    import fcntl
except ImportError:  # Windows: no run dir lock
    fcntl = None  # type: ignore[assignment]


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
        kill_point("atomic.before_replace")
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


class UnreadableFile(ValueError):
    """A file mnms will not load: damaged, of another kind, or holding objects that could run code."""


def torch_load_safe(path: str | Path) -> Any:
    """``torch.load`` that runs no code from the file: it may hold tensors and plain containers only.

    Every file mnms writes with ``torch_save_atomic`` loads this way; anything else is an
    ``UnreadableFile`` saying which of the three it is (a missing file stays FileNotFoundError).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch's readers on an unsafe, truncated, damaged or foreign file
        problem = error
    if isinstance(problem, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        raise UnreadableFile(
            f"{path} holds more than tensors and plain containers, so mnms did not write it; it is refused "
            f"unread, since loading it could run code ({_first_line(problem)})"
        )
    raise UnreadableFile(f"{path} is damaged, truncated or not a file torch.save wrote ({_first_line(problem)})")


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:100]}"


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
    LOCK: ClassVar[str] = ".lock"  # held by the search writing the run dir; names its process
    FAILURE: ClassVar[str] = "failure.json"  # the error of the last job that failed in the run dir

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

    @property
    def failure(self) -> Path:
        return self.path / self.FAILURE

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run dir while a search writes it: a second writer fails at once, naming the first.

        The lock is the OS's (``flock``), so it goes with its process, however that ends.
        A folder that cannot be written fails here too, before anything else happens.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = (self.path / self.LOCK).open("a+", encoding="utf-8")
        except OSError as error:
            raise RunDirError(
                f"cannot write the run dir {self.path} ({error.strerror}): point hydra.run.dir (or resume=) at "
                "a folder this user may write"
            ) from None
        with handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise RunDirError(
                        f"{self.path} is being written by {holder}: wait for that search to end, or give this one "
                        "another run dir"
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(
                f"the search of process {os.getpid()} on {socket.gethostname()}, "
                f"started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            )
            handle.flush()
            yield


class RunDirError(ValueError):
    """A run dir this run cannot use: not writable, or being written by another search."""
