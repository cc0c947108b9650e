"""The multitask search loop: pick a task, propose children, evaluate, score, learn, record.

Each controller step picks a task, asks the strategy for a batch of architectures,
has the executor train them, scores each (the reward rule, ``_reward``), feeds the
rewards back, records every trial and checkpoints. What it relies on lives one import
away: the trial book and the reuse rule (``book.py``), the resume contract
(``resume.py``), the pruning bars (``pruning.py``) and the budget (``config.py``). A
resumed search restores the checkpoint, replays the trials the log already holds for
the interrupted step, and evaluates only the rest, so it produces exactly the trial
sequence of a search that never stopped. ``search.mode=async`` hands the same parts to
its own scheduler (``asynchronous.py``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mnms.child.arch import complete_arch
from mnms.child.cost import cost_key
from mnms.executors.base import Executor
from mnms.executors.trial import OK, PRUNED, TrialOutcome, TrialRequest, has_metrics
from mnms.search.asynchronous import AsyncScheduler
from mnms.search.book import TrialBook
from mnms.search.config import SearchConfig
from mnms.search.cost import CostReward, pareto_front
from mnms.search.progress import SearchProgress, Stopwatch
from mnms.search.pruning import Bars
from mnms.search.records import TrialRecord
from mnms.search.resume import Checkpoint, recover_lost_rows
from mnms.search.strategies.base import Proposal, Strategy
from mnms.tracking import Tracker, TrackingConfig
from mnms.utils.config import ConfigError
from mnms.utils.faults import kill_point

__all__ = ["Search", "SearchConfig"]

log = logging.getLogger(__name__)
# One line per trial: train.log always, the console when it is not a terminal (mnms.app.logs).
trial_lines = logging.getLogger("mnms.trials")


class Search:
    """One search in one run dir. Plain arguments in, ``summary()`` out; no Hydra here.

    ``signature`` is what a resume must share (``mnms.search.resume.signature``);
    ``mnms.search.job.SearchJob`` derives it from the configs the search is built from.
    """

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
        self.book = TrialBook(self.run_dir, seed, reuse=cfg.reuse_rewards)
        self.bars = Bars(cfg.pruning)
        self.costs = CostReward(cfg.cost)
        self.checkpoint = Checkpoint(self.run_dir, signature)
        self.step = 0
        self.task_rng = torch.Generator().manual_seed(seed)
        self.timed = Stopwatch()
        self.trials_done = 0  # trials covered by the last checkpoint
        self.updates = 0  # strategy updates made by this process (for logging cadences)
        # Per task, the strategy's proposals (each step's first draw of every slot, before any
        # redraw) and how many repeated an architecture the task had tried or the step held:
        # whether its policy still searches, whatever the redraws then make of it.
        self.draws: Counter[str] = Counter()
        self.repeats: Counter[str] = Counter()
        self.draw_log: list[tuple[int, str, int, int]] = []  # (step, task, proposed, repeats) of this process
        self.settled: set[str] = set()  # tasks warned about
        self.stopping = False  # Ctrl-C asked the search to stop early (run)
        self.progress = SearchProgress(cfg.trials, self.tasks, enabled=False)  # run() gives it the live one
        if cfg.mode == "async" and not strategy.asynchronous:
            raise ConfigError(
                f"search.mode=async needs a strategy that learns from trials in any order (ppo, reinforce, random); "
                f"strategy={strategy.name} pairs each batch it proposes with one observe: use search.mode=sync"
            )
        cfg.warn_if_tasks_go_unsearched(self.tasks)
        self._restore()
        # Async: trials logged after the checkpoint were trained and recorded, but not learned
        # from; they are learned from (their log_prob names the policy that proposed them)
        # rather than trained again.
        self.book.resume(self.trials_done, relearn=cfg.mode == "async")
        for row in self.book.log.rows:  # each task's cost target, as the trials so far set it
            if row.reused_from is None:
                self.costs.feed(row.trial, row.task, row)
        kill_point("search.start")

    # --- resume -------------------------------------------------------------------
    def _restore(self) -> None:
        """Go on from the checkpoint; a new search writes its first one before any trial.

        So a checkpoint always exists once a trial is logged. The log may be ahead of it (a
        kill mid-step, or a checkpoint restored from an older copy): the restored strategy
        proposes those trials again and they are replayed from the log, each checked against
        its proposal. Or the log may be behind it (truncated afterwards) by part of the last
        step, whose rows the checkpoint holds.
        """
        log_file = self.book.log
        state = self.checkpoint.load(log_file)
        if state is None:
            self._checkpoint(0)
            return
        self.strategy.load_state_dict(state["strategy"])
        self.task_rng.set_state(state["task_rng"])
        self.step = state["step"]
        self.timed.seconds.update(state["seconds"])
        self.book.load_state_dict(state, f"{self.run_dir} checkpoint")
        self.draws.update(state.get("draws", {}))
        self.repeats.update(state.get("repeats", {}))
        self.trials_done = state["trials"]
        recover_lost_rows(log_file, self.trials_done, state.get("batch", []), str(self.run_dir))
        if self.cfg.trials < len(log_file):
            raise ConfigError(
                f"search.trials={self.cfg.trials} is below the {len(log_file)} trials {log_file.path} holds: a "
                f"resume goes on or extends a search; give search.trials >= {len(log_file)}"
            )

    def _checkpoint(self, trials: int) -> None:
        """Save everything an exact resume needs, with the rows recorded since the last checkpoint."""
        self.checkpoint.save(
            {
                "strategy": self.strategy.state_dict(),
                "task_rng": self.task_rng.get_state(),
                "step": self.step,
                "trials": trials,
                "seconds": self.timed.seconds,
                "draws": dict(self.draws),
                "repeats": dict(self.repeats),
                **self.book.state_dict(),
            }
        )
        self.book.since_checkpoint = []

    def save(self, trials: int) -> None:
        """Checkpoint, covering the first ``trials`` trials."""
        with self.timed("checkpoint"):
            self._checkpoint(trials)
        kill_point("checkpoint.written")

    # --- one trial: what both schedulers ask of the search ------------------------------
    def next_task(self) -> str:
        if self.cfg.task_schedule == "round_robin":
            return self.tasks[self.step % len(self.tasks)]
        return self.tasks[int(torch.randint(len(self.tasks), (1,), generator=self.task_rng))]

    def propose(self, task: str, n: int, holding: Collection[str] = ()) -> list[Proposal]:
        """Up to ``n`` proposals for ``task``'s next step, none a repeat under ``search.repeats=redraw``.

        A repeat is an architecture the task already tried, one an earlier slot of the step
        holds, or one of ``holding`` (async: proposed and not yet recorded). Redrawn repeats
        are discarded by the strategy, so they are never evidence. After ``max_draws`` draws
        per slot with nothing new, the step takes the repeats (reused results, which use trials).
        """
        redraw = self.cfg.repeats == "redraw"
        fresh: list[Proposal] = []
        repeats: list[Proposal] = []
        seen, draws, proposed = set(holding), 0, None
        while len(fresh) < n and (draws == 0 or (redraw and draws < n * self.cfg.max_draws)):
            for proposal in self.strategy.propose(task, n - len(fresh) if redraw else n):
                draws += 1
                key = self.book.key(task, complete_arch(proposal.arch, self.child_defaults))
                if key in self.book.tried or key in seen:
                    repeats.append(proposal)
                    if redraw:
                        continue
                else:
                    seen.add(key)
                fresh.append(proposal)
            proposed = proposed or (draws, len(repeats))  # the strategy's own proposals, before any redraw
        self._count_proposals(task, *proposed)
        if redraw and not fresh:  # nothing new within the draws: the step reuses what it drew
            fresh, repeats = repeats[:n], repeats[n:]
        if redraw:
            self.strategy.discard(task, repeats)
        return fresh

    def _count_proposals(self, task: str, proposed: int, repeats: int) -> None:
        """Count the step's proposals that repeat (what the policy does, whatever the search then makes of it)."""
        self.draws[task] += proposed
        self.repeats[task] += repeats
        self.draw_log.append((self.step, task, proposed, repeats))
        if 2 * repeats > proposed and task not in self.settled and len(self.book) < self.cfg.trials:
            self.settled.add(task)
            fix = (
                "to keep exploring raise strategy.policy.entropy_weight, or stop the search"
                if self.strategy.trains_controller
                else "the space may hold few architectures this task has not tried: widen search_space, or stop"
            )
            log.warning(
                "%s: %d of the %d architectures the strategy proposed at step %d repeat ones the task already tried "
                "or the step already held, with %d trials of the budget left: its proposals have settled (%s). "
                "More trials will add few new children; %s (docs/search.md, 'What a trial counts').",
                task,
                repeats,
                proposed,
                self.step,
                self.cfg.trials - len(self.book),
                "repeats are drawn again" if self.cfg.repeats == "redraw" else "repeats use trials and train nothing",
                fix,
            )

    def request(self, trial: int, task: str, arch: dict[str, Any], bars_from: int) -> TrialRequest:
        """The request for a child; its bars come from the trials before ``bars_from``."""
        bars = self.bars.before(bars_from, task, self.book.log.rows)
        return TrialRequest(trial, task, arch, self.seed, bars, cost_key(task, arch))

    def _reward(self, task: str, outcome: TrialOutcome) -> float:
        """The reward rule: the child's ``search.reward`` score shaped by its cost (``search.cost``); a pruned
        child's best so far (``search.pruned_reward=best_so_far``) or, like any child that did not finish,
        ``search.failure_reward``."""
        scored = has_metrics(outcome) and (outcome.status != PRUNED or self.cfg.pruned_reward == "best_so_far")
        if not scored:
            return self.cfg.failure_reward
        if outcome.status == PRUNED:  # it spent only part of its cost: shaped, being stopped would pay
            return outcome.metrics[self.cfg.reward]
        return self.costs.shaped(task, outcome.metrics[self.cfg.reward], outcome.metrics)

    def row(
        self,
        trial: int,
        task: str,
        arch: dict,
        proposal: Proposal,
        outcome: TrialOutcome,
        reused_from: int | None = None,
        step: int | None = None,
    ) -> TrialRecord:
        """The record of ``trial``: ``proposal`` for ``task``, trained to ``outcome`` (or sharing ``reused_from``'s)."""
        if reused_from is None:  # a child that trained counts towards its task's cost target, itself included
            self.costs.feed(trial, task, outcome)
        return TrialRecord(
            trial=trial,
            step=self.step if step is None else step,
            task=task,
            arch=arch,
            decisions=proposal.arch,
            seed=self.seed,
            reward=self._reward(task, outcome),
            status=outcome.status,
            error=outcome.error,
            metrics=outcome.metrics,
            reused_from=reused_from,
            wall_seconds=outcome.wall_seconds if reused_from is None else 0.0,
            log_prob=proposal.log_prob,
        )

    # --- learning: what both schedulers do with a task's finished trials ------------------
    def learn(self, task: str, rows: list[TrialRecord], proposals: list[Proposal], *, step: int, trials: int) -> None:
        """Observe the rewards of ``rows``, log them at controller step ``step``, checkpoint ``trials``."""
        with self.timed("policy"):
            stats = self.strategy.observe(task, proposals, [row.reward for row in rows])
        kill_point("search.observed")
        with self.timed("tracking"):
            self._track(task, rows, stats, step)
        self.save(trials)

    def _track(self, task: str, rows: list[TrialRecord], stats: Mapping[str, float], step: int) -> None:
        ordered = sorted(rows, key=lambda r: r.trial)
        for row, (task_trial, best_so_far) in zip(ordered, self.book.standing(ordered)):
            table_row = {**row.table_row(), "task_trial": task_trial, "best_so_far": best_so_far}
            # Charts of the decisions the search made, not of the fields it left at one value.
            charted = [key for key in table_row if not key.startswith("arch.") or key[5:] in row.decisions]
            self.tracker.log_trial(table_row, charted)
            trial_lines.info(row.line())
        rewards = [row.reward for row in rows]
        best = self.book.best[task].reward if task in self.book.best else 0.0
        metrics = {f"{task}/reward": sum(rewards) / len(rewards), f"{task}/best": best}
        if self.draw_log and self.draw_log[-1][1] == task:
            _, _, proposed, repeats = self.draw_log[-1]
            metrics[f"{task}/repeat_fraction"] = repeats / proposed
        metrics[f"{task}/distinct"] = self.book.distinct([task])[task]
        metrics.update({f"{task}/{key}": value for key, value in stats.items()})
        if self.tracker.wants_probabilities(self.updates):
            for decision, probs in self.strategy.choice_probabilities(task).items():
                metrics.update({f"{task}/p/{decision}/{choice}": p for choice, p in probs.items()})
        self.updates += 1
        self.tracker.log_metrics(metrics, step=step)

    def run(self) -> dict[str, Any]:
        """Search until the budget is spent, or until Ctrl-C (``stopping``): the children in flight are then
        recorded and checkpointed, so the run dir goes on exactly with ``resume=``."""
        with SearchProgress(self.cfg.trials, self.tasks, enabled=self.cfg.progress) as progress, self._interruptible():
            self.progress = progress
            if self.cfg.mode == "async":
                with self.timed("loop"):
                    AsyncScheduler(self).run(progress)
            else:
                self._run_sync(progress)
        self.book.log.close()
        return self.summary()

    # --- synchronous search: a batch per controller step ----------------------------------
    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """The first Ctrl-C asks the search to stop after the children in flight (a child's trainer would
        otherwise end the whole process on it); a second one stops at once, the run dir resumable all the same."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: object) -> None:
            if self.stopping:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.stopping = True
            log.warning("Ctrl-C: stopping once the children in flight are recorded (Ctrl-C again stops at once)")

        previous = signal.signal(signal.SIGINT, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run_sync(self, progress: SearchProgress) -> None:
        trials = self.trials_done
        progress.update(trials, self.book)
        while trials < self.cfg.trials and not self.stopping:
            with self.timed("loop"):
                trials = self._step(trials)
            progress.update(trials, self.book)

    def _step(self, trials: int) -> int:
        """One controller step: propose, evaluate, record, learn, log, checkpoint."""
        task = self.next_task()
        with self.timed("policy"):
            proposals = self.propose(task, min(self.cfg.batch_size, self.cfg.trials - trials))
        kill_point("search.proposed")
        rows = self._rows_for(task, trials, proposals)
        kill_point("search.evaluated")
        with self.timed("records"):
            self.book.record(rows)
        self.step += 1
        self.learn(task, rows, proposals, step=self.step - 1, trials=trials + len(rows))
        return trials + len(rows)

    def _rows_for(self, task: str, first_trial: int, proposals: list[Proposal]) -> list[TrialRecord]:
        """Trial records for a batch: replayed from the log, shared (the reuse rule, ``book.py``), or trained now."""
        archs = [complete_arch(proposal.arch, self.child_defaults) for proposal in proposals]
        plan = self.book.plan(task, first_trial, archs)
        rows: dict[int, TrialRecord] = dict(plan.replayed)
        for slot, source in plan.reused.items():
            outcome = TrialOutcome(OK, source.metrics)
            rows[slot] = self.row(first_trial + slot, task, archs[slot], proposals[slot], outcome, source.trial)
        requests = [self.request(first_trial + slot, task, archs[slot], first_trial) for slot in plan.train]
        with self.timed("evaluate"):
            outcomes = self.executor.evaluate(requests, self.progress.advance) if requests else []
        for slot, outcome in zip(plan.train, outcomes, strict=True):
            rows[slot] = self.row(first_trial + slot, task, archs[slot], proposals[slot], outcome)
        for slot, source_slot in plan.twins.items():
            source = rows[source_slot]
            outcome = TrialOutcome(source.status, source.metrics, source.error)
            rows[slot] = self.row(first_trial + slot, task, archs[slot], proposals[slot], outcome, source.trial)
        return [rows[slot] for slot in range(len(proposals))]

    def summary(self) -> dict[str, Any]:
        """Best architecture per task and where the time went."""
        return {
            "trials": len(self.book),
            "steps": self.step,
            "distinct": self.book.distinct(self.tasks),  # architectures each task trained
            "capped": self.book.capped(self.tasks),  # children that ran into trainer.time_limit_s
            "repeat_fraction": {task: self.repeats[task] / self.draws[task] for task in self.tasks if self.draws[task]},
            "best": {
                task: {key: getattr(row, key) for key in ("trial", "reward", "decisions", "arch", "metrics")}
                for task, row in self.book.best.items()
            },
            "unsuccessful": self.book.unsuccessful(self.tasks),
            # Per task, the children no other beats on both accuracy and counted compute, cheapest first.
            "pareto": {task: pareto_front(self.book.log.rows, task, "val_accuracy", "flops") for task in self.tasks},
            "cost_target": {task: self.costs.target(task) for task in self.tasks}
            if self.cfg.cost.shape != "none"
            else {},
            "choice_probabilities": {task: self.strategy.choice_probabilities(task) for task in self.tasks},
            "seconds": dict(self.timed.seconds),
            "overhead_fraction": self.timed.overhead_fraction(),
        }
