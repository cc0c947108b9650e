"""The trial book: the log, each task's best, the results identical proposals share, and trials not learned from.

**The reuse rule.** A duplicate -- a proposal of the same task, architecture and seed as
an earlier trial -- shares that trial's result instead of training (``search.reuse_rewards``)
when the result is *reusable* (``mnms.executors.trial.reusable``: ok and not time-limited),
or when it met the same bars: a twin in the same sync batch, whose fate, failure or pruning
included, would repeat its source's. An async twin proposed while its source trains waits
for it and is then judged by the first half alone: it is submitted later, under other bars.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnms.child.result import TIME_LIMIT
from mnms.executors.trial import TIMEOUT, finished, reusable
from mnms.search.records import TrialLog, TrialRecord, with_pre_0_3_fields


def trial_key(task: str, arch: Mapping[str, Any], seed: int) -> str:
    """Identity of a trial for reuse: fields a record lacks (it predates them) hold what their absence meant."""
    return json.dumps([task, with_pre_0_3_fields(arch), seed], sort_keys=True)


@dataclass
class Plan:
    """What becomes of each slot of a sync batch: replayed from the log, shared, or trained."""

    replayed: dict[int, TrialRecord] = field(default_factory=dict)  # slot -> the logged trial
    reused: dict[int, TrialRecord] = field(default_factory=dict)  # slot -> an earlier batch's reusable trial
    twins: dict[int, int] = field(default_factory=dict)  # slot -> the earlier slot of this batch it shares
    train: list[int] = field(default_factory=list)  # slots that train now


class TrialBook:
    """A search's trials (``trials.jsonl``) and what it knows from them."""

    def __init__(self, run_dir: Path, seed: int, *, reuse: bool) -> None:
        self.log = TrialLog(run_dir)
        self.seed, self.reuse = seed, reuse
        self.best: dict[str, TrialRecord] = {}  # each task's best finished trial
        self.memo: dict[str, TrialRecord] = {}  # first reusable trial of each (task, arch, seed)
        self.tried: set[str] = set()  # every (task, arch, seed) a logged trial holds: what a redraw avoids
        self.trained: defaultdict[str, set[str]] = defaultdict(set)  # per task, the keys of trials that trained
        self.unobserved: defaultdict[str, list[int]] = defaultdict(list)  # async: trials not learned from yet
        self.since_checkpoint: list[TrialRecord] = []  # rows recorded after the last checkpoint

    def __len__(self) -> int:
        return len(self.log)

    def key(self, task: str, arch: Mapping[str, Any]) -> str:
        return trial_key(task, arch, self.seed)

    def source(self, task: str, arch: Mapping[str, Any]) -> TrialRecord | None:
        """The earlier trial whose result a proposal of ``arch`` shares; None when it trains."""
        return self.memo.get(self.key(task, arch)) if self.reuse else None

    def plan(self, task: str, first_trial: int, archs: Sequence[Mapping[str, Any]]) -> Plan:
        """Each slot of a sync batch starting at ``first_trial``, checked in the order that makes a
        resumed batch identical to an uninterrupted one: the log, earlier batches, earlier slots."""
        plan, first_slot = Plan(), {}
        for slot, arch in enumerate(archs):
            trial, key = first_trial + slot, self.key(task, arch)
            if trial < len(self.log):
                plan.replayed[slot] = self.replayed(trial, task, arch)
            elif (source := self.source(task, arch)) is not None:
                plan.reused[slot] = source
            elif self.reuse and key in first_slot:
                plan.twins[slot] = first_slot[key]
            else:
                plan.train.append(slot)
            first_slot.setdefault(key, slot)
        return plan

    def replayed(self, trial: int, task: str, arch: Mapping[str, Any]) -> TrialRecord:
        """The logged ``trial``, which a resumed search proposes again; refused if it proposes another."""
        logged = self.log.rows[trial]
        if (logged.task, with_pre_0_3_fields(logged.arch)) != (task, with_pre_0_3_fields(arch)):
            raise ValueError(
                f"resume diverged at trial {trial}: the log has {logged.task} {logged.arch}, "
                f"the restored search proposes {task} {arch}"
            )
        return logged

    def record(self, rows: Sequence[TrialRecord]) -> None:
        """Log the rows not logged yet; remember every row's result and each task's best."""
        for row in rows:
            if row.trial >= len(self.log):
                self.log.append(row)
            self.remember(row)
            best = self.best.get(row.task)
            if finished(row) and (best is None or row.reward > best.reward):
                self.best[row.task] = row
        self.since_checkpoint.extend(rows)

    def remember(self, row: TrialRecord) -> None:
        self.tried.add(self.key(row.task, row.arch))
        if row.reused_from is None:
            self.trained[row.task].add(self.key(row.task, row.arch))
        if reusable(row):
            self.memo.setdefault(self.key(row.task, row.arch), row)

    def state_dict(self) -> dict[str, Any]:
        """The book's part of a checkpoint: each task's best, the rows since the last one, unobserved trials."""
        return {
            "best": {task: row.to_json() for task, row in self.best.items()},
            "batch": [row.to_json() for row in self.since_checkpoint],
            "unobserved": {task: list(trials) for task, trials in self.unobserved.items() if trials},
        }

    def load_state_dict(self, state: Mapping[str, Any], where: str) -> None:
        self.best = {task: TrialRecord.from_json(row, where) for task, row in state["best"].items()}
        self.unobserved.update({task: list(trials) for task, trials in state.get("unobserved", {}).items()})

    def resume(self, checkpointed: int, *, relearn: bool) -> None:
        """Remember the results of the trials a checkpoint covers; with ``relearn`` (async), record
        the logged trials after them as trials still to learn from."""
        for row in self.log.rows[:checkpointed]:
            self.remember(row)
        if relearn:
            unlearned = self.log.rows[checkpointed:]
            self.record(unlearned)
            for row in unlearned:
                self.unobserved[row.task].append(row.trial)

    def standing(self, rows: Sequence[TrialRecord]) -> list[tuple[int, float | None]]:
        """For each of ``rows`` (logged trials of one task): how many trials its task had before it, and the
        task's best reward up to and including it (None while none has finished) -- the x and y of a
        best-so-far curve, which is how searches of a task compare."""
        first, task = min(row.trial for row in rows), rows[0].task
        earlier = [row for row in self.log.rows if row.task == task and row.trial < first]
        count, best = len(earlier), max((row.reward for row in earlier if finished(row)), default=None)
        standing = []
        for row in sorted(rows, key=lambda r: r.trial):
            if finished(row):
                best = row.reward if best is None else max(best, row.reward)
            standing.append((count, best))
            count += 1
        return standing

    def distinct(self, tasks: Sequence[str]) -> dict[str, int]:
        """Distinct architectures each task trained (a trial that shared an earlier result trained nothing)."""
        return {task: len(self.trained[task]) for task in tasks}

    def capped(self, tasks: Sequence[str]) -> dict[str, int]:
        """Children of each task that ran into ``trainer.time_limit_s``: stopped and scored on their best epoch
        so far (``stopped_by: time_limit``), or out of time before any (``timeout``). A shared result counts once."""
        counts = dict.fromkeys(tasks, 0)
        for row in self.log:
            hit = row.status == TIMEOUT or row.metrics.get("stopped_by") == TIME_LIMIT
            if hit and row.reused_from is None and row.task in counts:
                counts[row.task] += 1
        return counts

    def unsuccessful(self, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each task no child finished for: its trial count and its most common error (what to fix first)."""
        errors: dict[str, Counter[str]] = {task: Counter() for task in tasks if task not in self.best}
        for row in self.log:
            if row.task in errors:
                errors[row.task][f"{row.status}: {row.error}"] += 1
        return {
            task: {"trials": counts.total(), "error": counts.most_common(1)[0][0] if counts else None}
            for task, counts in errors.items()
        }
