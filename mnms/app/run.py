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
from mnms.utils.io import RunDir

RUN_MODES: dict[str, Callable[[DictConfig, Path], Any]] = {
    "child": run_child,
    "search": run_search,
    "propose": run_propose,
    "predict": run_predict,
}


def run(cfg: DictConfig, run_dir: Path) -> Any:
    """Run ``cfg.mode`` in ``run_dir``, its only writer: a second run started there fails at once, naming the first.

    A search locks the run dir it writes itself (``resume=`` names another than Hydra's).
    """
    if cfg.mode not in RUN_MODES:
        raise ConfigError(f"mode={cfg.mode!r} is unknown; valid modes are {sorted(RUN_MODES)}")
    if cfg.mode == "search":
        return run_search(cfg, run_dir)
    with RunDir(run_dir).lock(f"mode={cfg.mode}"):
        return RUN_MODES[cfg.mode](cfg, run_dir)
