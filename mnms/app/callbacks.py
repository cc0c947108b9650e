"""Hydra callbacks every run gets (``conf/config.yaml``): checks Hydra itself would fail on with a raw traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnms.utils.io import RunDirError


class WritableRunDir(Callback):
    """Refuse, before Hydra creates it, a run dir (or sweep dir) that cannot be made or written, naming the key.

    Hydra makes ``hydra.run.dir`` before any mnms code runs, so a path through a file, or
    a folder this user may not write, would end in an OSError from deep inside Hydra.
    Hydra turns a callback's exception into a warning and goes on, so the refusal exits.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(_resolved(config, "run"), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(_resolved(config, "sweep"), "hydra.sweep.dir")


def _resolved(config: DictConfig, kind: str) -> Path:
    """``hydra.<kind>.dir``, resolved: its interpolations may read Hydra's own config (``${hydra:...}``), which
    Hydra only sets after the callbacks' start hooks, so set it now."""
    HydraConfig.instance().set_config(config)
    return Path(config.hydra[kind].dir)


def _exit_unless_writable(folder: Path, key: str) -> None:
    try:
        check_writable(folder, key)
    except RunDirError as error:
        raise SystemExit(f"Error: {error}") from None


def check_writable(folder: Path, key: str) -> None:
    """Raise ``RunDirError`` unless ``folder`` exists as a writable folder or could be made."""
    fix = f"point {key} at a folder this user may write"
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise RunDirError(f"{key}={str(folder)!r} cannot be made: {existing} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"{key}={str(folder)!r} cannot be written: this user may not write in {existing}; {fix}")
