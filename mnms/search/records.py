"""The search's source of truth: the trial record, an append-only log of them, and an atomic checkpoint.

W&B mirrors these; nothing is ever reconstructed from W&B. Both survive SIGKILL at
any instant: each trial is one flushed, fsynced JSON line (a torn last line is
dropped on reopen), and the checkpoint is replaced atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnms.executors.trial import finished
from mnms.utils.config import ConfigError, unknown_keys
from mnms.utils.faults import kill_point
from mnms.utils.io import RunDir, torch_load_safe, torch_save_atomic

METRICS = ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")  # the scores every record shows
TRAINING = ("epochs", "stopped_by", "num_parameters", "train_seconds", "flops")  # what a child's training did and cost

# What a child's settings meant before they existed (mnms < 0.3): no convolution, no wide
# tower, nothing fine-tuned but tables; every epoch trained, the last one scored. Literals,
# not today's defaults: what an old record meant must not move when a default does.
CHILD_BEFORE_0_3 = {
    "fine_tune_layers": 0,
    "conv_filters": 0,
    "conv_max_width": 3,
    "conv_activation": "relu",
    "conv_batch_norm": False,
    "conv_dropout": 0.0,
    "wide": "none",
    "wide_learning_rate": 0.01,
    "wide_l2": 0.0,
}
TRAINER_BEFORE_0_3 = {"patience": None, "epoch_selection": "last"}


def with_pre_0_3_fields(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` with the fields an older record lacks, at what their absence meant."""
    return {**CHILD_BEFORE_0_3, **arch}


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search: what was proposed, what the child scored, what it cost. A line of ``trials.jsonl``."""

    trial: int  # 0-based position in the search
    step: int  # the controller step that proposed it
    task: str
    arch: dict[str, Any]  # the full architecture the child trained (unsearched fields from child.arch)
    decisions: dict[str, Any]  # the decisions the strategy made (the active ones)
    seed: int
    reward: float  # metrics[search.reward]; for a child that did not finish, search.failure_reward
    # (a pruned child's: see search.pruned_reward)
    status: str  # ok | pruned | failed | timeout | diverged (mnms.executors.trial.STATUSES)
    error: str | None  # why it did not finish
    metrics: dict[str, Any]  # ChildResult fields when ok or pruned, else {}
    reused_from: int | None  # the trial whose result this identical (task, arch, seed) reused
    wall_seconds: float  # the child's training time (0 when reused)
    log_prob: float  # under the policy that proposed it (0 for random search and Optuna)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any], where: str = "a trial record") -> TrialRecord:
        names = [field.name for field in dataclasses.fields(cls)]
        if not isinstance(values, Mapping):
            raise ValueError(f"{where} is not an mnms trial record (a JSON object), it is {type(values).__name__}")
        unknown, missing = unknown_keys(values, names), sorted(set(names) - set(values))
        if unknown or missing:
            raise ValueError(f"{where} is not an mnms trial record (unknown keys {unknown}, missing {missing})")
        wrong = [f"{name}={values[name]!r}" for name, ok in _FIELD_CHECKS.items() if not ok(values[name])]
        if wrong:
            raise ValueError(f"{where} has mistyped fields {wrong}: the log was edited or damaged; restore it")
        return cls(**values)

    def line(self) -> str:
        """The record as one plain-text log line: trial, task, status, reward, seconds, and whether it trained."""
        trained = f"{self.wall_seconds:.1f} s" if self.reused_from is None else f"shares trial {self.reused_from}"
        error = f" ({self.error.splitlines()[0][:120]})" if self.error else ""
        return f"trial {self.trial} {self.task}: {self.status}, reward {self.reward:.4f}, {trained}{error}"

    def table_row(self) -> dict[str, Any]:
        """The record as one flat row (W&B's table): trial, task, each ``arch.*`` field, reward, scores, what
        training did (epochs, why it stopped, parameters) and whether it shared an earlier trial's result."""
        flat = {
            key: getattr(self, key)
            for key in ("trial", "step", "task", "reward", "status", "error", "wall_seconds", "reused_from")
        }
        flat.update({f"arch.{key}": value for key, value in self.arch.items()})
        flat.update({key: self.metrics.get(key) for key in (*METRICS, *TRAINING)})
        return flat


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each field of a logged record must be (JSON has no other way to say it).
_FIELD_CHECKS = {
    "trial": _int,
    "step": _int,
    "task": lambda value: isinstance(value, str),
    "arch": lambda value: isinstance(value, dict),
    "decisions": lambda value: isinstance(value, dict),
    "seed": _int,
    "reward": _number,
    "status": lambda value: isinstance(value, str),
    "error": lambda value: value is None or isinstance(value, str),
    "metrics": lambda value: isinstance(value, dict),
    "reused_from": lambda value: value is None or _int(value),
    "wall_seconds": _number,
    "log_prob": _number,
}


class TrialLog:
    """``trials.jsonl``: one JSON object per trial, in trial order."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).trials
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = self._read_and_repair()
        self._file = self.path.open("a", encoding="utf-8")

    def _read_and_repair(self) -> list[TrialRecord]:
        """Read every complete line; truncate a line torn by a kill mid-write."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        rows = _records(complete.decode("utf-8"), self.path)
        for expected, row in enumerate(rows):
            if row.trial != expected:
                raise ValueError(
                    f"{self.path} line {expected + 1} has trial={row.trial!r}, expected {expected}: "
                    "the log was edited by hand; restore it or start a new run dir"
                )
        return rows

    def append(self, record: TrialRecord) -> None:
        if record.trial != len(self.rows):
            raise ValueError(f"trial {record.trial} appended after {len(self.rows)} rows; trials must be in order")
        self._file.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(record)
        kill_point("log.appended")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self.rows)

    def close(self) -> None:
        self._file.close()


def read_trials(run_dir: Path) -> list[TrialRecord]:
    """The complete trial records of a run dir, or of a trials file (read-only; a torn last line is ignored)."""
    path = RunDir(run_dir).trials if Path(run_dir).is_dir() else Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a search run dir?")
    text = path.read_text(encoding="utf-8")
    return _records(text[: text.rfind("\n") + 1], path)


def _records(text: str, path: Path) -> list[TrialRecord]:
    """The records of complete ``trials.jsonl`` lines; a bad line is an error naming the file and the line."""
    records = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path} line {number} is not JSON ({error.msg}): the log was edited or damaged; "
                "restore it or start a new run dir"
            ) from None
        records.append(TrialRecord.from_json(values, f"{path} line {number}"))
    return records


def ranked_architectures(records: list[TrialRecord], task: str) -> list[TrialRecord]:
    """``task``'s finished trials, one per distinct architecture (its best), best reward first.

    Ties go to the earlier trial, as the search's own best does, so rank 1 is the
    architecture ``summary.json`` names.
    """
    best: dict[str, TrialRecord] = {}
    for row in records:
        key = json.dumps(row.arch, sort_keys=True)
        if row.task == task and finished(row) and (key not in best or row.reward > best[key].reward):
            best[key] = row
    return sorted(best.values(), key=lambda row: (-row.reward, row.trial))


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    torch_save_atomic(RunDir(run_dir).checkpoint, state)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint of ``run_dir``, or None when it has none; it loads without running code from the file."""
    path = RunDir(run_dir).checkpoint
    if not path.exists():
        return None
    fix = "Restore checkpoint.pt from a copy, or start a new run dir; trials.jsonl keeps every trial either way"
    return torch_load_safe(path, fix)


def resumable_run_dir(path: str | Path) -> Path:
    """``path``, when it is the run dir of a search that can go on; otherwise an error saying why and what to do.

    A search locks its run dir before anything else, so a ``.lock`` alone is a search
    killed while it set up (loading tasks, starting Ray): it starts again from nothing.
    """
    path = Path(path).expanduser()
    fix = "resume= takes the run dir of an earlier search; check the path, or drop resume= to start a new search"
    if not path.exists():
        raise ConfigError(f"resume={str(path)!r} does not exist: {fix}")
    if not path.is_dir():
        raise ConfigError(f"resume={str(path)!r} is a file, not a run dir: {fix}")
    files = RunDir(path)
    if not any(file.exists() for file in (files.trials, files.checkpoint, files.path / files.LOCK)):
        raise ConfigError(
            f"resume={str(path)!r} holds no search (no {files.TRIALS}, {files.CHECKPOINT} or {files.LOCK}): {fix}"
        )
    return path
