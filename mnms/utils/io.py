"""Atomic files, and the names of the files a run dir holds.

Every file mnms writes appears whole or not at all: it is written to a unique temporary
file beside its target, flushed and fsynced, then renamed over the target. A kill at any
instant leaves either the old file or the new one, and two processes writing the same
target never share a temporary file.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import pickletools
import re
import socket
import tempfile
import time
import warnings
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
    """Create or replace ``path`` with what ``write`` writes into a binary file handle.

    The file gets the mode a plain ``open`` would (the user's umask), not the temporary
    file's 0600. The temporary file is named for its host and process, so the next write
    to ``path`` removes one a killed writer on this host left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temp_files(path)
    prefix = f".{path.name}.{_HOST}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        kill_point("atomic.before_replace")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_HOST = socket.gethostname().replace(".", "-")


@functools.cache
def _umask() -> int:
    """This process's umask, read once (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_orphaned_temp_files(path: Path) -> None:
    """Delete the temporary files of writes to ``path`` whose writer, a process of this host, is gone."""
    for temp in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}.*.tmp"):
        pid = temp.name.removeprefix(f".{path.name}.{_HOST}.").split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            temp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def _pickled_global(path: Path) -> str | None:
    """The first importable name a raw pickle file refers to (what torch's reader stops before,
    on pickles it cannot parse), read from its opcodes without unpickling; None if it names none."""
    try:
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(path.read_bytes()):
            if opcode.name == "GLOBAL":
                return str(argument).replace(" ", ".")
            if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(argument, str):
                strings.append(argument)
    except Exception:  # noqa: BLE001 - not a pickle (a damaged zip, a foreign file): nothing named
        return None
    return None


def torch_load_safe(path: str | Path, fix: str = "") -> Any:
    """``torch.load`` that runs no code from the file: it may hold tensors and plain containers only.

    Every file mnms writes with ``torch_save_atomic`` loads this way; anything else is an
    ``UnreadableFile`` that says whether the file holds objects (which could run code) or
    is not a torch file at all, and ends with ``fix``, what the caller's user can do. A
    missing file stays FileNotFoundError.
    """
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch's readers on an unsafe, truncated, damaged or foreign file
        problem = ANSI.sub("", str(error))
        kind = type(error).__name__
    fix = f". {fix}" if fix else ""
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", problem)
    if named := unsafe.group(1) if unsafe else _pickled_global(Path(path)):
        raise UnreadableFile(
            f"{path} holds more than tensors and plain containers (it names {named}), so mnms did not "
            f"write it; it is refused unread, since loading it could run code{fix}"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", problem)
    reason = detail.group(1) if detail else (problem.strip().splitlines() or [""])[0]
    raise UnreadableFile(
        f"{path} is damaged, truncated or not a file torch.save wrote; it was not loaded "
        f"({kind}{': ' + reason[:100] if reason else ''}){fix}"
    )


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes in torch's messages


@dataclass(frozen=True)
class RunDir:
    """A run's folder and the files mnms keeps in it; the one place their names are written down."""

    TRIALS: ClassVar[str] = "trials.jsonl"  # every trial of a search, one JSON line each (the source of truth)
    CHECKPOINT: ClassVar[str] = "checkpoint.pt"  # what an exact resume needs
    SUMMARY: ClassVar[str] = "summary.json"  # a finished search's best architectures, or a failed job's error
    CONTROLLER: ClassVar[str] = "controller.pt"  # the trained controller, for transfer and proposals
    RESULT: ClassVar[str] = "result.json"  # what mode=child measured
    MODEL: ClassVar[str] = "model"  # the model folder mode=child trained (mnms.model.folder)
    PREDICTIONS: ClassVar[str] = "predictions.jsonl"  # what mode=predict wrote, unless output= says where
    PROPOSALS: ClassVar[str] = "proposals.json"  # what mode=propose decoded
    CONFIG: ClassVar[str] = "config.yaml"  # the composed config of the search that last wrote the run dir
    HYDRA_CONFIG: ClassVar[str] = ".hydra/config.yaml"  # Hydra's copy: the last job started here, even a failed one
    LOCK: ClassVar[str] = ".lock"  # held by the run writing the run dir, whatever its mode; names its process
    REPORT_LOCK: ClassVar[str] = ".report.lock"  # held by the report writing into a folder (runs may go on there)
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
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def predictions(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def proposals(self) -> Path:
        return self.path / self.PROPOSALS

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def hydra_config(self) -> Path:
        return self.path / self.HYDRA_CONFIG

    @property
    def failure(self) -> Path:
        return self.path / self.FAILURE

    @contextmanager
    def lock(self, holder: str = "the search", file: str = LOCK) -> Iterator[None]:
        """Hold the run dir while ``holder`` writes it: a second writer fails at once, naming the first.

        The lock is the OS's (``flock``), so it goes with its process, however that ends.
        A folder that cannot be written fails here too, before anything else happens.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = (self.path / file).open("a+", encoding="utf-8")
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
                        f"{self.path} is being written by {holder}: wait for it to end, or give this run another "
                        "run dir"
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(
                f"{holder} of process {os.getpid()} on {socket.gethostname()}, "
                f"started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            )
            handle.flush()
            yield


class RunDirError(ValueError):
    """A run dir this run cannot use: not writable, being written by another run, or holding a finished one."""
