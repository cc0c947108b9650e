"""What ``train.py`` runs: the registry of modes, each a plain function of the composed config and a run dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mnms.app.child import run_child
from mnms.app.predict import run_predict
from mnms.app.propose import run_propose
from mnms.app.search import run_search
from mnms.utils.config import ConfigError

RUN_MODES: dict[str, Callable[[DictConfig, Path], Any]] = {
    "child": run_child,
    "search": run_search,
    "propose": run_propose,
    "predict": run_predict,
}


def run(cfg: DictConfig, run_dir: Path) -> Any:
    """Run ``cfg.mode`` in ``run_dir``."""
    if cfg.mode not in RUN_MODES:
        raise ConfigError(f"mode={cfg.mode!r} is unknown; valid modes are {sorted(RUN_MODES)}")
    return RUN_MODES[cfg.mode](cfg, run_dir)
