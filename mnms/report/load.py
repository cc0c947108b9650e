"""Search run dirs -> tidy DataFrames: one row per job, one row per trial.

Everything comes from the runs' own files (``trials.jsonl``, ``summary.json``,
``.hydra/config.yaml``, ``controller.pt``), never from W&B: the trial log is the
source of truth and W&B only mirrors it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnms.executors.trial import finished
from mnms.search.mode import run_mode
from mnms.search.records import TrialRecord, read_trials
from mnms.transfer.artifact import load_controller_artifact
from mnms.utils.io import RunDir

DECISION_PREFIX = "decision."


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder under ``paths`` holding a ``trials.jsonl`` or a ``summary.json`` (a job that failed early).

    A path with none is refused, naming it, rather than skipped: a mistyped folder among
    several would otherwise drop its runs from the report unnoticed.
    """
    found: set[Path] = set()
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist; pass search run dirs or a multirun dir")
        mine = {path.parent for name in (RunDir.TRIALS, RunDir.SUMMARY) for path in root.rglob(name)}
        if not mine:
            raise FileNotFoundError(
                f"no {RunDir.TRIALS} under {str(root)!r}: pass search run dirs or a multirun dir "
                "such as outputs/transfer-study/<time>, or leave this path out"
            )
        found |= mine
    return sorted(found)


def load_jobs(run_dirs: list[Path], root: Path) -> pd.DataFrame:
    """One row per run: ``run`` (its path relative to ``root``), ``label`` (``<mode> seed <seed>``, what
    tables and figures name it by), ``path``, ``mode``, ``seed``, ``tasks``, ``status``, ``error`` and
    ``controller`` (its ``controller.pt`` or None).

    ``mode`` is what the run is (``mnms.search.mode``: its study mode, transfer, scratch,
    multitask, or a baseline's strategy), never a free-text label. ``status`` is ``ok``,
    ``failed`` (``summary.json`` says so), ``interrupted`` (Ctrl-C: its summary holds the
    best so far) or ``incomplete`` (no summary yet: still running, or killed).
    """
    rows = []
    for run_dir in run_dirs:
        cfg = run_config(run_dir)
        files = RunDir(run_dir)
        summary = _summary(files.summary) if files.summary.exists() else None
        status = "incomplete" if summary is None else summary.get("status", "ok")
        controller = files.controller
        rows.append(
            {
                "run": str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
                "path": run_dir,
                "mode": run_mode(cfg),
                "seed": int(_required(cfg, "seed", run_dir)),
                "tasks": list(_required(cfg, "tasks", run_dir)),
                "status": status,
                "error": summary.get("error") if summary else None,
                "controller": controller if controller.exists() else None,
            }
        )
    jobs = pd.DataFrame(rows)
    jobs.insert(1, "label", _labels(jobs))
    return jobs


def _labels(jobs: pd.DataFrame) -> list[str]:
    """``<mode> seed <seed>``, and `` #2``, `` #3`` ... (in path order) where two runs would share one."""
    base = [f"{mode} seed {seed}" for mode, seed in zip(jobs["mode"], jobs["seed"])]
    seen: dict[str, int] = {}
    labels = []
    for label in base:
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if base.count(label) == 1 else f"{label} #{seen[label]}")
    return labels


def _summary(path: Path) -> dict:
    """A run's ``summary.json``, or an error naming the file (the report leaves such a run out only by hand)."""
    fix = "restore it from a copy, or leave this run dir out of the report"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid UTF-8 JSON ({error}): {fix}") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path} holds a JSON {type(summary).__name__}, not a search's summary (an object): {fix}")
    return summary


def _required(cfg: DictConfig, key: str, run_dir: Path) -> object:
    """``cfg.<key>``, which every search's config has; its absence names the run's config file."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        files = RunDir(run_dir)
        path = files.config if files.config.exists() else files.hydra_config
        raise ValueError(f"{path} has no {key!r}: it is not a search's config; restore it or leave {run_dir} out")
    return value


def run_config(run_dir: Path) -> DictConfig:
    """The config of the search that wrote ``run_dir``.

    Hydra rewrites ``.hydra/config.yaml`` for every job started in a run dir, even one that
    then fails (a re-run with another seed), so the search's own ``config.yaml`` comes first;
    run dirs of mnms 0.1.0 and failed jobs have only Hydra's.
    """
    files = RunDir(run_dir)
    path = files.config if files.config.exists() else files.hydra_config
    if not path.exists():
        raise FileNotFoundError(
            f"{files.hydra_config} is missing: the report labels runs by their config (mode, seed, tasks); "
            "run searches through train.py, or leave this run dir out"
        )
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not valid YAML ({reason}): restore it, or leave {run_dir} out") from None
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path} holds no mapping of settings: restore it, or leave {run_dir} out")
    return cfg


def load_trials(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial of every job, with its job's ``run``, ``mode`` and ``seed``.

    ``task_trial`` numbers a task's trials 1, 2, ... within its run, so a multitask run and
    a single-task run compare per task. Failed trials keep their row (they spent budget)
    with NaN accuracies; ``seconds`` is the child's training time (0 for a reused
    result), the compute a search spent: without the encoding a child pays only when its
    features are not cached yet, which depends on the order runs shared the cache in, not on
    the search (``child_seconds``). Searched decisions become ``decision.<name>`` columns (NaN where a
    decision was not made, e.g. ``width_1`` with no hidden layer).
    """
    rows = []
    for job in jobs.itertuples():
        if not RunDir(job.path).trials.exists():
            continue
        for row in read_trials(job.path):
            ok = finished(row)
            rows.append(
                {
                    "run": job.run,
                    "mode": job.mode,
                    "seed": job.seed,
                    "task": row.task,
                    "trial": row.trial,
                    "status": row.status,
                    "reward": row.reward,
                    "val_accuracy": row.metrics.get("val_accuracy") if ok else None,
                    "test_accuracy": row.metrics.get("test_accuracy") if ok else None,
                    "seconds": child_seconds(row),
                    # counted compute (mnms/child/flops.py); NaN for records from before it was counted
                    "flops": row.metrics.get("flops") if ok and row.metrics.get("flops") else None,
                    "arch": json.dumps(row.arch, sort_keys=True),
                    **{f"{DECISION_PREFIX}{name}": value for name, value in row.decisions.items()},
                }
            )
    if not rows:
        raise ValueError(f"none of the runs {list(jobs['run'])} has any trial yet; nothing to report")
    trials = pd.DataFrame(rows).sort_values(["run", "trial"], ignore_index=True)
    trials["task_trial"] = trials.groupby(["run", "task"]).cumcount() + 1
    for column in ("val_accuracy", "test_accuracy", "reward", "flops"):
        trials[column] = trials[column].astype(float)
    return trials


def child_seconds(row: TrialRecord) -> float:
    """The compute a trial spent, what every report and benchmark calls "child seconds": its fit time
    (``train_seconds``); a failed child's whole time, having no metrics; 0 when reused.

    Training rather than wall time: a child's wall time includes encoding its task with a
    new encoder, paid once per task and encoder and then shared through the feature cache
    by every later search, so the first search to meet an encoder would be charged for all.
    """
    if row.reused_from is not None:
        return 0.0
    return float(row.metrics.get("train_seconds", row.wall_seconds))


def decision_names(trials: pd.DataFrame) -> list[str]:
    """The searched decisions present in ``trials`` (``decision.<name>`` columns), by name."""
    return [c.removeprefix(DECISION_PREFIX) for c in trials.columns if c.startswith(DECISION_PREFIX)]


def load_task_embeddings(jobs: pd.DataFrame) -> dict[str, tuple[list[str], torch.Tensor]]:
    """``label -> (task_names, task_embeddings)`` from each run's ``controller.pt`` that embeds two or more tasks."""
    embeddings = {}
    for job in jobs.itertuples():
        if pd.isna(job.controller):
            continue
        artifact = load_controller_artifact(job.controller)  # checks the file and runs no code from it
        names, vectors = artifact.task_names, artifact.task_embeddings.float()
        if len(names) >= 2:
            embeddings[job.label] = (names, vectors)
    return embeddings
