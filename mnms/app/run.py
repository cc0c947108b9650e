"""What ``train.py`` runs: the registry of modes, each a plain function of the composed config and a run dir."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnms.app.child import run_child
from mnms.app.predict import run_predict
from mnms.app.propose import run_propose
from mnms.app.resume import resumed_config
from mnms.app.search import NoChildSucceeded, run_search
from mnms.app.tasks import run_tasks
from mnms.data.descriptor import DescriptorError
from mnms.data.task_files import TaskError
from mnms.model.files import InputError
from mnms.model.folder import ModelError
from mnms.search.records import resumable_run_dir
from mnms.transfer.artifact import load_controller_artifact
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir, RunDirError, UnreadableFile

# What a user can get wrong (a setting, a file, a run dir): train.py prints the message alone, no traceback.
USER_ERRORS = (
    ConfigError,
    TaskError,
    DescriptorError,
    InputError,
    ModelError,
    RunDirError,
    UnreadableFile,
    NoChildSucceeded,
)

RUN_MODES: dict[str, Callable[[DictConfig, Path], Any]] = {
    "child": run_child,
    "search": run_search,
    "propose": run_propose,
    "predict": run_predict,
    "tasks": run_tasks,
}


def run(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = ()) -> Any:
    """Run ``cfg.mode`` in ``run_dir``, its only writer: a second run started there fails at once, naming the first.

    ``overrides`` are the command line's ``key=value`` items. A search locks the run dir
    it writes itself (``resume=`` names another than Hydra's) and, resumed, runs under the
    config that run dir recorded, with the command line's changes laid over it.
    """
    if cfg.mode not in RUN_MODES:
        raise ConfigError(f"mode={cfg.mode!r} is unknown; valid modes are {sorted(RUN_MODES)}")
    if cfg.mode == "search":
        given = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
        if "task" in given:
            raise ConfigError(
                f"task={cfg.task} is the task of mode=child and mode=propose; a search reads tasks: give "
                f"tasks=[{cfg.task}] (or mode=child to train one child)"
            )
        if cfg.resume:
            cfg = resumed_config(cfg, resumable_run_dir(cfg.resume), overrides)
        elif cfg.transfer["from"] and "search_space" not in given and OmegaConf.select(cfg, "study.mode") is None:
            # The pre-trained controller's weights fit one space, which its file holds: search that one.
            cfg.search_space = load_controller_artifact(Path(cfg.transfer["from"])).space.to_config()
        return run_search(cfg, run_dir)
    with RunDir(run_dir).lock(f"mode={cfg.mode}"):
        return RUN_MODES[cfg.mode](cfg, run_dir)
