"""The transfer-vs-scratch study: what Python adds to its YAML (``conf/experiment/transfer_study.yaml``, ``study/``).

The study's modes are a config group, swept with ``-m``; each job is an ordinary
search. Two things stay here: ``check_study_start`` refuses a job whose starting point
contradicts its mode (a ``transfer.from`` given on the command line would reach every
job of the sweep), and ``JobStatusCallback`` makes a failed job leave a trace in its run
dir, because a multirun otherwise only reports it after every job has ended. Hydra
imports the callback in the launching process, so this module imports neither torch
nor the rest of mnms.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir, write_json_atomic

log = logging.getLogger(__name__)


def check_study_start(cfg: DictConfig, source: str | None) -> None:
    """In a study job, ``transfer.from`` is set exactly when the job's mode warm-starts (``study.warm_start``)."""
    warm_start = OmegaConf.select(cfg, "study.warm_start")
    if warm_start is None or warm_start == (source is not None):
        return
    mode = cfg.study.mode
    if warm_start:
        raise ConfigError(
            f"study={mode} starts from study.pretrained, but transfer.from is null; "
            "leave transfer.from unset in a study and pass study.pretrained=<the pretraining run dir>"
        )
    raise ConfigError(
        f"study={mode} starts from scratch, but transfer.from={source!r} is set; a study takes its "
        "pretrained controller as study.pretrained=<run dir> (only study=transfer uses it): "
        "drop transfer.from"
    )


class JobStatusCallback(Callback):
    """Hydra callback: a failed job writes ``summary.json`` ``{"status": "failed", ...}`` in its run dir.

    Hydra already catches the job's exception (the joblib and submitit launchers let the
    other jobs finish and fail the sweep at the end), and a failure during the search
    closes its W&B run with exit code 1 (``Tracker``'s ``with``). What is lost is the
    traceback: the exception crosses a process boundary without it. So it is written
    here, and ``python -m mnms.report`` lists the job as failed. An exception that cannot
    be pickled would abort the whole joblib sweep, so it is replaced by a
    ``RuntimeError`` carrying its text.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the public getter re-raises for a failed job
        run_dir = RunDir(OmegaConf.select(config, "resume") or config.hydra.runtime.output_dir)
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
