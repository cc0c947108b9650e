"""The transfer-vs-scratch study: one Hydra job is one (mode, seed, held-out task) search.

``conf/experiment/transfer_study.yaml`` sweeps ``study.mode`` x ``seed``. Its YAML sets
what interpolation can (``tasks: [${study.held_out}]``, W&B ``group: ${study.name}``,
``job_type: ${study.mode}``), so ``.hydra/config.yaml`` already labels each job.
``apply_study_mode`` does what YAML cannot: choose the controller group by mode and set
or clear ``transfer.from``. ``JobStatusCallback`` makes a failed job leave a trace in
its run dir, because a multirun otherwise only reports it after every job has ended.
"""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from mnms.utils.io import RunDir, write_json_atomic

# Not imported from mnms.app.common: Hydra imports the callback
# in the launching process, which should not pay for torch.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModeSettings:
    """What a study mode changes in the composed config."""

    controller: str | None  # conf/controller/<name>.yaml to use; None keeps the composed learning controller
    transfer: bool  # start from the pretrained controller named by transfer.from


MODES: dict[str, ModeSettings] = {
    "transfer": ModeSettings(controller=None, transfer=True),
    "scratch": ModeSettings(controller=None, transfer=False),
    "random": ModeSettings(controller="random", transfer=False),
    "optuna": ModeSettings(controller="optuna", transfer=False),
}
LEARNING_CONTROLLERS = ("ppo", "reinforce")


def apply_study_mode(cfg: DictConfig) -> DictConfig:
    """``cfg`` adjusted for its ``study.mode``; unchanged (same object) when it has no ``study`` section.

    ``transfer`` and ``scratch`` keep the composed learning controller (PPO in the study),
    so they differ only in where the controller starts; ``random`` and ``optuna`` swap in
    their controller group as ``controller=<name>`` would.
    """
    if "study" not in cfg:
        return cfg
    mode = cfg.study.mode
    if mode not in MODES:
        raise ValueError(f"study.mode={mode!r} is unknown; valid modes are {sorted(MODES)}")
    settings = MODES[mode]
    source = OmegaConf.select(cfg, "transfer.from")
    if settings.transfer and not source:
        raise ValueError(
            "study.mode=transfer needs transfer.from=<the pretraining run dir or its controller.pt>; "
            "run `python train.py experiment=pretrain` first and pass its run dir"
        )
    adjusted = copy.deepcopy(cfg)
    with open_dict(adjusted):
        if settings.controller is not None:
            adjusted.controller = _controller_group(settings.controller)
        elif adjusted.controller.kind not in LEARNING_CONTROLLERS:
            raise ValueError(
                f"study.mode={mode} trains a controller but controller.kind={adjusted.controller.kind!r}; "
                f"use controller=ppo (the study default) or one of {list(LEARNING_CONTROLLERS)}"
            )
        adjusted.transfer["from"] = source if settings.transfer else None
    return adjusted


def _controller_group(name: str) -> DictConfig:
    path = CONF_DIR / "controller" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"the study mode needs {path}; add that controller config or drop the mode")
    return OmegaConf.load(path)


class JobStatusCallback(Callback):
    """Hydra callback: a failed job writes ``summary.json`` ``{"status": "failed", ...}`` in its run dir.

    Hydra already catches the job's exception (the joblib and submitit launchers let the
    other jobs finish and fail the sweep at the end), and a failure during the search
    closes its W&B run with exit code 1 (``Tracker``'s ``with``). What is lost is the
    traceback: the exception crosses a process boundary without it. So it is written here, and ``python -m mnms.report`` lists the job
    as failed. An exception that cannot be pickled would abort the whole joblib sweep, so
    it is replaced by a ``RuntimeError`` carrying its text.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the public getter re-raises for a failed job
        run_dir = RunDir(config.resume or config.hydra.runtime.output_dir)
        payload = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error)),
        }
        write_json_atomic(run_dir.summary, payload)
        log.error("job failed: %s (traceback in %s)", payload["error"], run_dir.summary)
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - any pickling failure must not take the sweep down
            job_return.return_value = RuntimeError(payload["error"])
