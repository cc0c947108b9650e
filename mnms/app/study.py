"""The transfer-vs-scratch study: what Python adds to its YAML (``conf/experiment/transfer_study.yaml``, ``study/``).

The study's modes are a config group, swept with ``-m``; each job is an ordinary
search. Two things stay here: ``check_study_job`` refuses a job whose strategy or
starting point contradicts its mode (an override on the command line reaches every job
of a sweep, whatever its mode), and ``JobStatusCallback`` makes a failed job leave a
trace in its run dir, because a multirun otherwise only reports it after every job has
ended.
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir, RunDirError, write_json_atomic

log = logging.getLogger(__name__)


def check_study_job(cfg: DictConfig, source: str | None, trains_controller: bool) -> None:
    """In a study job, the strategy and the starting point are the ones its mode declares (``conf/study/``).

    ``study.strategy`` is the strategy a mode runs (null: one that trains a controller,
    ``ppo`` unless ``strategy=`` says otherwise); ``study.warm_start`` says whether it starts
    from ``study.pretrained``, which is then ``transfer.from``.
    """
    if OmegaConf.select(cfg, "study.mode") is None:
        return
    mode, kind, expected = cfg.study.mode, cfg.strategy.kind, cfg.study.strategy
    separately = (
        "sweep the learning modes and the baselines apart, e.g. -m experiment=transfer_study "
        "study=transfer,scratch strategy=reinforce, then -m experiment=transfer_study study=random,optuna"
    )
    if expected is None and not trains_controller:
        raise ConfigError(f"study={mode} trains a controller, but strategy={kind} trains none; {separately}")
    if expected is not None and kind != expected:
        raise ConfigError(
            f"study={mode} runs strategy={expected}, but strategy={kind} reached this job (a "
            f"strategy given on the command line reaches every job of a sweep); {separately}"
        )
    if cfg.study.warm_start and source is None:
        raise ConfigError(
            f"study={mode} starts from study.pretrained, but transfer.from is null; "
            "leave transfer.from unset in a study and pass study.pretrained=<the pretraining run dir>"
        )
    if not cfg.study.warm_start and source is not None:
        raise ConfigError(
            f"study={mode} starts from scratch, but transfer.from={source!r} is set; a study takes its "
            "pretrained controller as study.pretrained=<run dir> (only study=transfer uses it): "
            "drop transfer.from"
        )


class JobStatusCallback(Callback):
    """Hydra callback: a failed job leaves its error and traceback in its own run dir.

    Hydra already catches the job's exception (the joblib and submitit launchers let the
    other jobs finish and fail the sweep at the end), and a failure during the search
    closes its W&B run with exit code 1 (``Tracker``'s ``with``). What is lost is the
    traceback: the exception crosses a process boundary without it. So it is written to
    ``failure.json``, and to ``summary.json`` as ``{"status": "failed", ...}`` so that
    ``python -m mnms.report`` lists the job as failed -- unless ``summary.json`` is a
    search's own (its results, or why no child finished), which a failed re-run (a
    mismatched seed, say) must not replace. A failed ``resume=`` is recorded in the job's
    own run dir, not in the one it tried to resume, and a run dir another search holds
    is not touched. An exception that cannot be pickled would abort the whole joblib
    sweep, so it is replaced by a ``RuntimeError`` carrying its text.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the public getter re-raises for a failed job
        payload = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error)),
        }
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - any pickling failure must not take the sweep down
            job_return.return_value = RuntimeError(payload["error"])
        run_dir = RunDir(config.hydra.runtime.output_dir)
        try:
            with run_dir.lock("the failure report"):
                kept = _record(run_dir, payload)
        except (RunDirError, OSError) as busy:  # another search's run dir, or one nobody may write
            log.error("job failed: %s (not recorded in its run dir: %s)", payload["error"], busy)
            return
        log.error(
            "job failed: %s (traceback in %s%s)",
            payload["error"],
            run_dir.failure,
            "; the search's summary.json there is kept" if kept else "",
        )


def _record(run_dir: RunDir, payload: dict[str, str]) -> bool:
    """Write the failure; True if ``summary.json`` was a search's summary, so it was kept."""
    write_json_atomic(run_dir.failure, payload)
    kept = _holds_a_search_summary(run_dir)
    if not kept:
        write_json_atomic(run_dir.summary, payload)
    return kept


def _holds_a_search_summary(run_dir: RunDir) -> bool:
    """Whether ``summary.json`` is what a search wrote at its end (its results, or why it found none).

    Only a failure report (this callback's) may be replaced.
    """
    try:
        return "trials" in json.loads(run_dir.summary.read_text())
    except (OSError, ValueError):
        return False
