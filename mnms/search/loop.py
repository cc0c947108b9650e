"""The multitask search loop: pick a task, propose children, evaluate, learn, record.

Each controller step picks a task, asks the strategy for a batch of architectures,
has the executor train them, feeds the rewards back, appends every trial to the
log and checkpoints. A resumed search restores the checkpoint, replays the trials
the log already holds for the interrupted step, and evaluates only the rest, so it
produces exactly the trial sequence of a search that never stopped.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from mnms.child.arch import complete_arch
from mnms.executors.base import Executor, TrialOutcome, TrialRequest
from mnms.search.progress import SearchProgress
from mnms.search.pruning import PRUNERS, Curve, Pruner, curve_of
from mnms.search.records import TrialLog, TrialRecord, load_checkpoint, save_checkpoint
from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy
from mnms.tracking import Tracker, TrackingConfig
from mnms.utils.config import ConfigError, check, is_int
from mnms.utils.faults import kill_point

log = logging.getLogger(__name__)

SCHEDULES = ("round_robin", "uniform")
REWARDS = ("val_accuracy", "val_macro_f1")
PRUNED_REWARDS = ("best_so_far", "failure")
MODES = ("sync", "async")


@dataclass(frozen=True)
class SearchConfig:
    """How a search spends its budget (Hydra group ``search``)."""

    section: ClassVar[str] = "search"

    trials: int = 400  # total children over all tasks
    # Examples per split the children see (stratified, seeded); None = the whole task.
    # A cap makes a cheap proxy search (e.g. 2000), at the cost of rewards that rank
    # architectures as they do on small data.
    max_examples: int | None = None
    batch_size: int = 8  # children per controller step
    task_schedule: str = "round_robin"
    reward: str = "val_accuracy"
    reuse_rewards: bool = True  # an identical (task, architecture, seed) reuses its recorded result
    failure_reward: float = 0.0  # reward of a child that raised, diverged or overran
    progress: bool = True
    # Stopping bad children early (mnms/search/pruning.py): none | median | asha.
    pruner: str = "none"
    pruner_startup_trials: int = 5  # trials of a task that must give a value before pruning it
    pruner_warmup_epochs: int = 1  # median: the first epoch a child can be stopped after
    pruner_min_epochs: int = 1  # asha: the first rung
    pruner_reduction_factor: int = 3  # asha: the top 1/factor of a rung goes on
    # A pruned child's reward: its best validation score so far (best_so_far), or
    # failure_reward (failure). See docs/pruning.md for why the default is best_so_far.
    pruned_reward: str = "best_so_far"
    # sync: each controller step trains its whole batch, then learns (exactly reproducible).
    # async: a free worker gets a new child at once; the strategy learns from each batch_size
    # trials of a task as they finish (no trial lost or repeated after a crash; order may vary).
    mode: str = "sync"

    def __post_init__(self) -> None:
        check(self, "trials", is_int(self.trials) and self.trials >= 1, "an integer >= 1")
        check(self, "batch_size", is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1")
        check(
            self,
            "max_examples",
            self.max_examples is None or (is_int(self.max_examples) and self.max_examples >= 2),
            "null (all examples) or an integer >= 2",
        )
        check(self, "task_schedule", self.task_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        check(self, "reward", self.reward in REWARDS, f"one of {list(REWARDS)}")
        check(self, "mode", self.mode in MODES, f"one of {list(MODES)}")
        check(self, "pruner", self.pruner in PRUNERS, f"one of {list(PRUNERS)}")
        check(self, "pruned_reward", self.pruned_reward in PRUNED_REWARDS, f"one of {list(PRUNED_REWARDS)}")
        for name in ("pruner_startup_trials", "pruner_warmup_epochs", "pruner_min_epochs"):
            check(self, name, is_int(getattr(self, name)) and getattr(self, name) >= 1, "an integer >= 1")
        check(
            self,
            "pruner_reduction_factor",
            is_int(self.pruner_reduction_factor) and self.pruner_reduction_factor >= 2,
            "an integer >= 2 (asha keeps the top 1/factor at each rung)",
        )

    @property
    def pruning(self) -> Pruner:
        return Pruner(
            self.pruner,
            startup_trials=self.pruner_startup_trials,
            warmup_epochs=self.pruner_warmup_epochs,
            min_epochs=self.pruner_min_epochs,
            reduction_factor=self.pruner_reduction_factor,
        )

    def pruning_settings(self) -> dict[str, Any]:
        """What pruning a resumed search must share: nothing but ``none`` when it is off."""
        if self.pruner == "none":
            return {"pruner": "none"}
        return {key: value for key, value in asdict(self).items() if key.startswith("prune")}


def resume_signature(
    *,
    tasks: Sequence[str],
    seed: int,
    space: SearchSpace,
    strategy: Mapping[str, Any],
    search: SearchConfig,
    child: Mapping[str, Any],
    trainer: Mapping[str, Any],
    examples: Mapping[str, Mapping[str, int]],
    transfer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a resumed search must share with the original for its trial sequence to go on exactly.

    ``strategy`` is ``Strategy.resume_settings``, ``child`` the architecture defaults,
    ``trainer`` the children's budget, ``examples`` each task's split sizes.
    """
    return {
        "tasks": list(tasks),
        "seed": seed,
        "space": space.signature(),
        "strategy": dict(strategy),
        "batch_size": search.batch_size,
        "task_schedule": search.task_schedule,
        "reward": search.reward,
        "mode": search.mode,
        "pruning": search.pruning_settings(),
        "child": dict(child),
        # Where children train is not a setting the records depend on by design (a GPU
        # changes the numerics, not the method), so a search may resume on another machine.
        "trainer": {key: value for key, value in trainer.items() if key != "accelerator"},
        "examples": {t: dict(sizes) for t, sizes in examples.items()},
        **({"transfer": dict(transfer)} if transfer else {}),
    }


# What a child's settings meant before they existed (mnms < 0.3): no convolution, no wide
# tower, nothing fine-tuned but tables; every epoch trained, the last one scored. Literals,
# not today's defaults: what an old record meant must not move when a default does.
_CHILD_BEFORE_0_3 = {
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
_TRAINER_BEFORE_0_3 = {"patience": None, "epoch_selection": "last"}


def _with_pre_0_3_fields(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` with the fields an older record lacks, at what their absence meant."""
    return {**_CHILD_BEFORE_0_3, **arch}


def upgraded_signature(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's signature in today's names.

    mnms 0.1.0 named the strategy's settings ``controller``, with the controller's sizes
    under ``network`` and Optuna's TPE settings under ``policy``; those run dirs resume.
    Settings added later get the value that reproduces how the older run trained, so an
    old run resumes exactly once the new settings are given those values.
    """
    upgraded = dict(saved)
    upgraded["child"] = _with_pre_0_3_fields(saved.get("child", {}))
    upgraded["trainer"] = {**_TRAINER_BEFORE_0_3, **saved.get("trainer", {})}
    upgraded.setdefault("pruning", {"pruner": "none"})  # before mnms 0.4 no child was pruned,
    upgraded.setdefault("mode", "sync")  # and every search was synchronous
    if "controller" in saved:
        del upgraded["controller"]
        strategy = saved["controller"]
        if strategy.get("network"):  # a controller strategy: ppo or reinforce
            upgraded["strategy"] = {
                "kind": strategy["kind"],
                "controller": strategy["network"],
                "policy": strategy["policy"],
            }
        else:  # random (no settings) or optuna (TPE settings under policy)
            upgraded["strategy"] = {"kind": strategy["kind"], **(strategy.get("policy") or {})}
    if "controller" in upgraded.get("strategy", {}):  # before task descriptors: free task rows, one learning rate
        strategy = upgraded["strategy"]
        upgraded["strategy"] = {
            **strategy,
            "controller": {"task_descriptors": False, **strategy["controller"]},
            "policy": {"embedding_learning_rate": None, **strategy["policy"]},
        }
    return upgraded


def _first_difference(saved: Mapping[str, Any], ours: Mapping[str, Any], prefix: str = "") -> tuple | None:
    """``(dotted key, saved value, our value)`` of the first setting of ``ours`` that ``saved`` does not share."""
    for key, value in ours.items():
        theirs = saved.get(key)
        if theirs == value:
            continue
        nested = isinstance(theirs, Mapping) and isinstance(value, Mapping)
        return (nested and _first_difference(theirs, value, f"{prefix}{key}.")) or (f"{prefix}{key}", theirs, value)
    return None


def _reusable(row: TrialRecord) -> bool:
    """Whether a trial's result stands for an identical later proposal.

    Not a failure, nor a pruned child (later bars may let it through), nor a time-limited
    one (its score says how fast its machine was).
    """
    return row.status == "ok" and row.metrics.get("stopped_by") != "time_limit"


def _arch_key(task: str, arch: Mapping[str, Any], seed: int) -> str:
    """Identity of a trial for reuse: fields a record lacks (it predates them) hold their defaults."""
    return json.dumps([task, _with_pre_0_3_fields(arch), seed], sort_keys=True)


class Search:
    """One search in one run dir. Plain arguments in, ``summary()`` out; no Hydra here."""

    def __init__(
        self,
        cfg: SearchConfig,
        tasks: Sequence[str],
        strategy: Strategy,
        executor: Executor,
        run_dir: Path,
        *,
        child_defaults: Mapping[str, Any],
        seed: int,
        signature: Mapping[str, Any],
        tracker: Tracker | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("a search needs at least one task")
        self.cfg, self.tasks, self.strategy, self.executor = cfg, list(tasks), strategy, executor
        self.run_dir, self.child_defaults, self.seed = Path(run_dir), dict(child_defaults), seed
        self.tracker = tracker or Tracker(TrackingConfig(mode="disabled"), {})  # a disabled tracker does nothing
        self.signature = dict(signature)  # what a resumed search must agree on
        self.pruner = cfg.pruning
        self._curves: defaultdict[str, list[tuple[int, Curve]]] = defaultdict(list)  # task -> (trial, curve)
        self._curves_read = 0  # log rows read into _curves
        self._bar_cache: dict[str, tuple[int, dict[int, float]]] = {}  # task -> (curves used, bars)
        self.log = TrialLog(self.run_dir)
        self.step = 0
        self.task_rng = torch.Generator().manual_seed(seed)
        self.best: dict[str, TrialRecord] = {}  # each task's best ok trial
        # Where the time goes: "loop" is the wall time of whole steps, the rest its parts.
        self.seconds = dict.fromkeys(("loop", "evaluate", "policy", "records", "checkpoint", "tracking"), 0.0)
        self.trials_done = 0  # trials covered by the last checkpoint
        self.updates = 0  # strategy updates made by this process (for logging cadences)
        self.unobserved: defaultdict[str, list[int]] = defaultdict(list)  # async: trials not learned from yet
        self._since_checkpoint: list[TrialRecord] = []  # async: rows logged after the last checkpoint
        if cfg.mode == "async" and not strategy.asynchronous:
            raise ConfigError(
                f"search.mode=async needs a strategy that learns from trials in any order (ppo, reinforce, random); "
                f"strategy={strategy.name} pairs each batch it proposes with one observe: use search.mode=sync"
            )
        self._warn_if_tasks_go_unsearched()
        self._restore()
        self.memo: dict[str, TrialRecord] = {}  # first ok trial of each (task, arch, seed) before this batch
        for row in self.log.rows[: self.trials_done]:
            self._remember(row)
        if cfg.mode == "async":
            # Trials logged after the checkpoint were trained and recorded, but not learned
            # from: learn from them (their log_prob names the policy that proposed them)
            # rather than train them again.
            self._record(self.log.rows[self.trials_done :])
            for row in self.log.rows[self.trials_done :]:
                self.unobserved[row.task].append(row.trial)
            self._since_checkpoint = list(self.log.rows[self.trials_done :])
        kill_point("search.start")

    def _warn_if_tasks_go_unsearched(self) -> None:
        steps = -(-self.cfg.trials // self.cfg.batch_size)
        if self.cfg.task_schedule == "round_robin" and steps < len(self.tasks):
            log.warning(
                "search.trials=%d in steps of search.batch_size=%d reaches %d of the %d tasks: %s get no trial; "
                "give search.trials >= %d",
                self.cfg.trials,
                self.cfg.batch_size,
                steps,
                len(self.tasks),
                ", ".join(self.tasks[steps:]),
                self.cfg.batch_size * len(self.tasks),
            )

    # --- resume -------------------------------------------------------------------
    def _restore(self) -> None:
        """Go on from the checkpoint; a new search writes its first one before any trial.

        So a checkpoint always exists once a trial is logged. The log may be ahead of it (a
        kill mid-step, or a checkpoint restored from an older copy): the restored strategy
        proposes those trials again and they are replayed from the log, each checked against
        its proposal. Or the log may be behind it (truncated afterwards) by part of the last
        step, whose rows the checkpoint holds.
        """
        state = load_checkpoint(self.run_dir)
        if state is None:
            if len(self.log):
                raise ValueError(
                    f"{self.log.path} has {len(self.log)} trials but there is no checkpoint.pt (a run dir of mnms "
                    "0.1.0 killed before its first checkpoint, or a deleted checkpoint): it cannot be resumed; "
                    "start a new run dir"
                )
            self._checkpoint(0, [])
            return
        if difference := _first_difference(upgraded_signature(state["signature"]), self.signature):
            key, theirs, ours = difference
            raise ValueError(
                f"cannot resume {self.run_dir}: its {key} is {theirs!r}, this run's is {ours!r}; "
                "rerun with the original settings"
            )
        self.strategy.load_state_dict(state["strategy"])
        self.task_rng.set_state(state["task_rng"])
        self.step, self.seconds = state["step"], {**self.seconds, **state["seconds"]}
        self.unobserved.update({task: list(trials) for task, trials in state.get("unobserved", {}).items()})
        self.best = {
            task: TrialRecord.from_json(row, f"{self.run_dir} checkpoint") for task, row in state["best"].items()
        }
        self.trials_done = state["trials"]
        self._recover_lost_rows(state.get("batch", []))
        if self.cfg.trials < len(self.log):
            raise ValueError(
                f"search.trials={self.cfg.trials} is below the {len(self.log)} trials {self.log.path} holds: a "
                f"resume goes on or extends a search; give search.trials >= {len(self.log)}"
            )

    def _recover_lost_rows(self, batch: list[dict[str, Any]]) -> None:
        """Re-append the checkpointed step's rows that the log lost (a truncated trials.jsonl), or refuse.

        The step's rows the log still holds must be the checkpoint's: otherwise the log is
        another run's, and nothing is appended to it.
        """
        missing = self.trials_done - len(self.log)
        if missing <= 0:
            return
        rows = [TrialRecord.from_json(row, f"{self.run_dir} checkpoint") for row in batch]
        kept, lost = rows[: len(rows) - missing], rows[len(rows) - missing :]
        if (
            len(lost) != missing
            or lost[0].trial != len(self.log)
            or [row.to_json() for row in kept] != [row.to_json() for row in self.log.rows[len(self.log) - len(kept) :]]
        ):
            raise ValueError(
                f"{self.log.path} holds {len(self.log)} trials but checkpoint.pt counted {self.trials_done}: the log "
                "lost trials the checkpoint cannot restore; put back a complete trials.jsonl, or start a new run dir"
            )
        for row in lost:
            self.log.append(row)

    def _checkpoint(self, trials: int, batch: list[TrialRecord]) -> None:
        """Save everything an exact resume needs, with the rows of the step just recorded (``batch``)."""
        save_checkpoint(
            self.run_dir,
            {
                "signature": self.signature,
                "strategy": self.strategy.state_dict(),
                "task_rng": self.task_rng.get_state(),
                "step": self.step,
                "trials": trials,
                "best": {task: row.to_json() for task, row in self.best.items()},
                "seconds": self.seconds,
                "batch": [row.to_json() for row in batch],
                "unobserved": {task: list(trials) for task, trials in self.unobserved.items() if trials},
            },
        )

    # --- one step -----------------------------------------------------------------
    def _next_task(self) -> str:
        if self.cfg.task_schedule == "round_robin":
            return self.tasks[self.step % len(self.tasks)]
        return self.tasks[int(torch.randint(len(self.tasks), (1,), generator=self.task_rng))]

    def _rows_for(self, task: str, first_trial: int, proposals: list[Proposal]) -> list[TrialRecord]:
        """Trial records for a batch: replayed from the log, reused from an identical trial, or trained now.

        The order of the checks is what makes a resumed batch identical to an uninterrupted
        one: earlier batches (memo), then earlier slots of this batch (twins), then training.
        """
        archs = [complete_arch(proposal.arch, self.child_defaults) for proposal in proposals]
        rows: list[TrialRecord | None] = [None] * len(proposals)
        first_slot: dict[str, int] = {}
        twins: dict[int, int] = {}
        to_train: list[int] = []
        for slot, arch in enumerate(archs):
            trial, key = first_trial + slot, _arch_key(task, arch, self.seed)
            if trial < len(self.log):
                rows[slot] = self._replayed(trial, task, arch)
            elif self.cfg.reuse_rewards and key in self.memo:
                source = self.memo[key]
                rows[slot] = self._row(
                    trial, task, arch, proposals[slot], TrialOutcome("ok", source.metrics), reused_from=source.trial
                )
            elif self.cfg.reuse_rewards and key in first_slot:
                twins[slot] = first_slot[key]
            else:
                to_train.append(slot)
            first_slot.setdefault(key, slot)
        bars = self._bars(task, first_trial)
        requests = [TrialRequest(first_trial + slot, task, archs[slot], self.seed, bars) for slot in to_train]
        with self._timed("evaluate"):
            outcomes = self.executor.evaluate(requests) if requests else []
        for slot, outcome in zip(to_train, outcomes, strict=True):
            rows[slot] = self._row(first_trial + slot, task, archs[slot], proposals[slot], outcome)
        for slot, source_slot in twins.items():
            source = rows[source_slot]
            outcome = TrialOutcome(source.status, source.metrics, source.error)
            rows[slot] = self._row(
                first_trial + slot, task, archs[slot], proposals[slot], outcome, reused_from=source.trial
            )
        return rows  # type: ignore[return-value]

    def _bars(self, task: str, before: int) -> dict[int, float]:
        """The pruner's bars for ``task`` from the trials before trial ``before`` (so a resume sets the same).

        Curves are read from the log once and the bars recomputed only when the task has a
        new one: every submission asks, which at many workers would otherwise rescan the log.
        """
        if self.cfg.pruner == "none":
            return {}
        for row in self.log.rows[self._curves_read :]:
            if row.reused_from is None and (curve := curve_of(row.status, row.metrics)):
                self._curves[row.task].append((row.trial, curve))
        self._curves_read = len(self.log)
        curves = self._curves[task]
        known = bisect.bisect_left(curves, before, key=lambda item: item[0])  # trials are logged in order
        if self._bar_cache.get(task, (-1, {}))[0] != known:
            self._bar_cache[task] = (known, self.pruner.bars(curve for _, curve in curves[:known]))
        return dict(self._bar_cache[task][1])  # each request its own

    def _replayed(self, trial: int, task: str, arch: dict[str, Any]) -> TrialRecord:
        logged = self.log.rows[trial]
        if (logged.task, _with_pre_0_3_fields(logged.arch)) != (task, _with_pre_0_3_fields(arch)):
            raise ValueError(
                f"resume diverged at trial {trial}: the log has {logged.task} {logged.arch}, "
                f"the restored search proposes {task} {arch}"
            )
        return logged

    def _row(
        self,
        trial: int,
        task: str,
        arch: dict,
        proposal: Proposal,
        outcome: TrialOutcome,
        reused_from: int | None = None,
        step: int | None = None,
    ) -> TrialRecord:
        scored = outcome.status == "ok" or (outcome.status == "pruned" and self.cfg.pruned_reward == "best_so_far")
        reward = outcome.metrics[self.cfg.reward] if scored else self.cfg.failure_reward
        return TrialRecord(
            trial=trial,
            step=self.step if step is None else step,
            task=task,
            arch=arch,
            decisions=proposal.arch,
            seed=self.seed,
            reward=reward,
            status=outcome.status,
            error=outcome.error,
            metrics=outcome.metrics,
            reused_from=reused_from,
            wall_seconds=outcome.wall_seconds if reused_from is None else 0.0,
            log_prob=proposal.log_prob,
        )

    def _record(self, rows: list[TrialRecord]) -> None:
        for row in rows:
            if row.trial >= len(self.log):
                self.log.append(row)
            self._remember(row)
            best = self.best.get(row.task)
            if row.status == "ok" and (best is None or row.reward > best.reward):
                self.best[row.task] = row

    def _remember(self, row: TrialRecord) -> None:
        if _reusable(row):
            self.memo.setdefault(_arch_key(row.task, row.arch, row.seed), row)

    def _track(self, task: str, rows: list[TrialRecord], stats: Mapping[str, float]) -> None:
        for row in rows:
            self.tracker.log_trial(row.table_row())
        rewards = [row.reward for row in rows]
        best = self.best[task].reward if task in self.best else 0.0
        metrics = {f"{task}/reward": sum(rewards) / len(rewards), f"{task}/best": best}
        metrics.update({f"{task}/{key}": value for key, value in stats.items()})
        if self.tracker.wants_probabilities(self.updates):
            for decision, probs in self.strategy.choice_probabilities(task).items():
                metrics.update({f"{task}/p/{decision}/{choice}": p for choice, p in probs.items()})
        self.updates += 1
        self.tracker.log_metrics(metrics, step=self.step)

    # --- the loop -----------------------------------------------------------------
    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - started

    def _step(self, trials: int) -> int:
        """One controller step: propose, evaluate, record, learn, log, checkpoint."""
        task = self._next_task()
        with self._timed("policy"):
            proposals = self.strategy.propose(task, min(self.cfg.batch_size, self.cfg.trials - trials))
        kill_point("search.proposed")
        rows = self._rows_for(task, trials, proposals)
        kill_point("search.evaluated")
        with self._timed("records"):
            self._record(rows)
        with self._timed("policy"):
            stats = self.strategy.observe(task, proposals, [row.reward for row in rows])
        kill_point("search.observed")
        with self._timed("tracking"):
            self._track(task, rows, stats)
        self.step += 1
        with self._timed("checkpoint"):
            self._checkpoint(trials + len(rows), rows)
        kill_point("checkpoint.written")
        return trials + len(rows)

    def run(self) -> dict[str, Any]:
        with SearchProgress(self.cfg.trials, self.tasks, enabled=self.cfg.progress) as progress:
            if self.cfg.mode == "async":
                with self._timed("loop"):
                    self._run_async(progress)
            else:
                self._run_sync(progress)
        self.log.close()
        return self.summary()

    def _run_sync(self, progress: SearchProgress) -> None:
        trials = self.trials_done
        progress.update(trials, self.best)
        while trials < self.cfg.trials:
            with self._timed("loop"):
                trials = self._step(trials)
            progress.update(trials, self.best)

    # --- asynchronous search -----------------------------------------------------------
    def _run_async(self, progress: SearchProgress) -> None:
        """Keep every worker busy: a free one gets the next proposal at once; learn per finished batch.

        Proposals are still made a batch at a time, for the task the schedule picks, from the
        strategy as it is then; a child's pruning bars come from the trials recorded when it
        is submitted. Trials are numbered in the order they finish. A proposal identical to
        one still training waits for it and shares its result, as a twin in a sync batch does.
        """
        queue: deque[tuple[str, Proposal, int]] = deque()  # proposed, not submitted: (task, proposal, step)
        flying: dict[int, tuple[Proposal, int]] = {}  # submitted: ticket -> (proposal, step)
        training: dict[str, int] = {}  # identity of each child in flight -> its ticket
        twins: dict[int, list[tuple[Proposal, int]]] = defaultdict(list)  # ticket -> proposals waiting on it
        tickets = itertools.count()
        progress.update(len(self.log), self.best)
        while len(self.log) < self.cfg.trials:
            while self.executor.in_flight < self.executor.capacity:
                pending = len(flying) + sum(map(len, twins.values()))
                if not queue and not self._propose_into(queue, self.cfg.trials - len(self.log) - pending):
                    break
                task, proposal, step = queue.popleft()
                arch = complete_arch(proposal.arch, self.child_defaults)
                key = _arch_key(task, arch, self.seed)
                source = self.memo.get(key) if self.cfg.reuse_rewards else None
                if source is not None:
                    outcome = TrialOutcome("ok", source.metrics)
                    self._finished(self._row(len(self.log), task, arch, proposal, outcome, source.trial, step))
                elif self.cfg.reuse_rewards and key in training:
                    twins[training[key]].append((proposal, step))
                else:
                    ticket = next(tickets)
                    flying[ticket] = (proposal, step)
                    if self.cfg.reuse_rewards:
                        training[key] = ticket
                    self.executor.submit(TrialRequest(ticket, task, arch, self.seed, self._bars(task, len(self.log))))
            if not flying:
                continue  # every proposal was a reused result; propose again
            with self._timed("evaluate"):
                finished = self.executor.wait()
            kill_point("search.evaluated")
            for request, outcome in finished:
                proposal, step = flying.pop(request.trial)
                training.pop(_arch_key(request.task, request.arch, self.seed), None)  # absent without reuse
                row = self._row(len(self.log), request.task, request.arch, proposal, outcome, None, step)
                self._finished(row)
                # Its twins go back to the front of the queue: the memo now holds its result if
                # that stands for them, and otherwise (failed, pruned, out of time) they train.
                queue.extendleft(
                    (row.task, proposal, step) for proposal, step in reversed(twins.pop(request.trial, []))
                )
            progress.update(len(self.log), self.best)
        for task in [task for task, trials in self.unobserved.items() if trials]:
            self._learn(task)  # the last, partial batches

    def _propose_into(self, queue: deque, room: int) -> bool:
        """Queue the next step's proposals (at most ``room``); False when the budget has no room left."""
        if room <= 0:
            return False
        task = self._next_task()
        with self._timed("policy"):
            proposals = self.strategy.propose(task, min(self.cfg.batch_size, room))
        kill_point("search.proposed")
        queue.extend((task, proposal, self.step) for proposal in proposals)
        self.step += 1
        # Saved before any of them trains: a resume must not propose them again, since those
        # already logged by then are adopted and the rest are simply dropped.
        self._save_async()
        return True

    def _finished(self, row: TrialRecord) -> None:
        """Record one finished trial; learn once its task has a batch of unobserved trials."""
        with self._timed("records"):
            self._record([row])
        self._since_checkpoint.append(row)
        self.unobserved[row.task].append(row.trial)
        if len(self.unobserved[row.task]) >= self.cfg.batch_size:
            self._learn(row.task)

    def _learn(self, task: str) -> None:
        """Observe ``task``'s unobserved trials, log them, checkpoint."""
        rows = [self.log.rows[trial] for trial in self.unobserved.pop(task)]
        proposals = [Proposal(row.decisions, row.log_prob) for row in rows]
        with self._timed("policy"):
            stats = self.strategy.observe(task, proposals, [row.reward for row in rows])
        kill_point("search.observed")
        with self._timed("tracking"):
            self._track(task, rows, stats)
        self._save_async()

    def _save_async(self) -> None:
        """Checkpoint an async search, with the rows logged since the last checkpoint."""
        with self._timed("checkpoint"):
            self._checkpoint(len(self.log), self._since_checkpoint)
        self._since_checkpoint = []
        kill_point("checkpoint.written")

    def unsuccessful(self) -> dict[str, dict[str, Any]]:
        """Each task no child finished for: its trial count and its most common error (what to fix first)."""
        errors: dict[str, Counter[str]] = {task: Counter() for task in self.tasks if task not in self.best}
        for row in self.log:
            if row.task in errors:
                errors[row.task][f"{row.status}: {row.error}"] += 1
        return {
            task: {"trials": counts.total(), "error": counts.most_common(1)[0][0] if counts else None}
            for task, counts in errors.items()
        }

    def summary(self) -> dict[str, Any]:
        """Best architecture per task and where the time went."""
        overhead = sum(self.seconds[key] for key in ("policy", "records", "checkpoint", "tracking"))
        return {
            "trials": len(self.log),
            "steps": self.step,
            "best": {
                task: {key: getattr(row, key) for key in ("trial", "reward", "decisions", "arch", "metrics")}
                for task, row in self.best.items()
            },
            "unsuccessful": self.unsuccessful(),
            "choice_probabilities": {task: self.strategy.choice_probabilities(task) for task in self.tasks},
            "seconds": dict(self.seconds),
            "overhead_fraction": overhead / self.seconds["loop"] if self.seconds["loop"] else 0.0,
        }
