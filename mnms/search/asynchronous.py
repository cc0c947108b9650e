"""``search.mode=async``: a free worker gets the next proposal at once; the strategy learns per finished batch.

Proposals are still made a batch at a time, for the task the schedule picks, from the
strategy as it is then; a child's pruning bars come from the trials recorded when it is
submitted. Trials are numbered in the order they finish. A proposal identical to one
still training waits for it (the reuse rule, ``book.py``). The search checkpoints after
each batch of proposals, before any of them trains, so a resume never proposes them
again: those logged by then are adopted, and the rest are simply dropped.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from typing import Any, Protocol

from mnms.child.arch import complete_arch
from mnms.executors.base import Executor
from mnms.executors.trial import OK, TrialOutcome, TrialRequest
from mnms.search.book import TrialBook
from mnms.search.config import SearchConfig
from mnms.search.progress import SearchProgress, Stopwatch
from mnms.search.records import TrialRecord
from mnms.search.strategies.base import Proposal, Strategy
from mnms.utils.faults import kill_point


class Driver(Protocol):
    """What the scheduler drives: a search (``mnms.search.loop.Search``) and its one learn step."""

    cfg: SearchConfig
    book: TrialBook
    executor: Executor
    strategy: Strategy
    child_defaults: dict[str, Any]
    timed: Stopwatch
    step: int
    stopping: bool  # Ctrl-C: hand out nothing more; record the children in flight, then stop

    def next_task(self) -> str: ...

    def propose(self, task: str, n: int, holding: set[str]) -> list[Proposal]: ...

    def request(self, trial: int, task: str, arch: dict[str, Any], bars_from: int) -> TrialRequest: ...

    def row(
        self,
        trial: int,
        task: str,
        arch: dict,
        proposal: Proposal,
        outcome: TrialOutcome,
        reused_from: int | None = None,
        step: int | None = None,
    ) -> TrialRecord: ...

    def learn(
        self, task: str, rows: list[TrialRecord], proposals: list[Proposal], *, step: int, trials: int
    ) -> None: ...

    def save(self, trials: int) -> None: ...


class AsyncScheduler:
    """Keeps every worker busy until the search's budget is logged, then learns from the last, partial batches."""

    def __init__(self, search: Driver) -> None:
        self.search = search
        self.queue: deque[tuple[str, Proposal, int]] = deque()  # proposed, not submitted: (task, proposal, step)
        self.flying: dict[int, tuple[Proposal, int]] = {}  # submitted: ticket -> (proposal, step)
        self.training: dict[str, int] = {}  # identity of each child in flight -> its ticket
        self.twins: dict[int, list[tuple[Proposal, int]]] = defaultdict(list)  # ticket -> proposals waiting on it
        self.tickets = itertools.count()
        self.holding: set[str] = set()  # identities proposed and not yet recorded: a redraw avoids them too

    def run(self, progress: SearchProgress) -> None:
        search, book = self.search, self.search.book
        progress.update(len(book), book)
        while len(book) < search.cfg.trials and not (search.stopping and not self.flying):
            self._fill()
            if not self.flying:
                continue  # every proposal was a reused result; propose again
            with search.timed("evaluate"):
                finished = search.executor.wait()
            kill_point("search.evaluated")
            for request, outcome in finished:
                proposal, step = self.flying.pop(request.trial)
                self.training.pop(book.key(request.task, request.arch), None)  # absent without reuse
                row = search.row(len(book), request.task, request.arch, proposal, outcome, None, step)
                self._finished(row)
                # Its twins go back to the front of the queue: the book now holds its result if
                # that stands for them, and otherwise (failed, pruned, out of time) they train.
                waiting = reversed(self.twins.pop(request.trial, []))
                self.queue.extendleft((row.task, proposal, step) for proposal, step in waiting)
            progress.update(len(book), book)
        if search.stopping:
            return  # stopped early: a resume learns from the partial batches as it goes on
        for task in [task for task, trials in book.unobserved.items() if trials]:
            self._learn(task)  # the last, partial batches

    def _fill(self) -> None:
        """Hand out proposals until every worker is busy or the budget has no room left."""
        search, book = self.search, self.search.book
        while search.executor.in_flight < search.executor.capacity and not search.stopping:
            pending = len(self.flying) + sum(map(len, self.twins.values()))
            if not self.queue and not self._propose(search.cfg.trials - len(book) - pending):
                return
            task, proposal, step = self.queue.popleft()
            arch = complete_arch(proposal.arch, search.child_defaults)
            key = book.key(task, arch)
            if (source := book.source(task, arch)) is not None:
                outcome = TrialOutcome(OK, source.metrics)
                self._finished(search.row(len(book), task, arch, proposal, outcome, source.trial, step))
            elif book.reuse and key in self.training:
                self.twins[self.training[key]].append((proposal, step))
            else:
                ticket = next(self.tickets)
                self.flying[ticket] = (proposal, step)
                if book.reuse:
                    self.training[key] = ticket
                search.executor.submit(search.request(ticket, task, arch, len(book)))

    def _propose(self, room: int) -> bool:
        """Queue the next step's proposals (at most ``room``); False when the budget has no room left."""
        search = self.search
        if room <= 0:
            return False
        task = search.next_task()
        with search.timed("policy"):
            proposals = search.propose(task, min(search.cfg.batch_size, room), self.holding)
        kill_point("search.proposed")
        self.holding.update(search.book.key(task, complete_arch(p.arch, search.child_defaults)) for p in proposals)
        self.queue.extend((task, proposal, search.step) for proposal in proposals)
        search.step += 1
        search.save(len(search.book))  # before any of them trains
        return True

    def _finished(self, row: TrialRecord) -> None:
        """Record one finished trial; learn once its task has a batch of unobserved trials."""
        book = self.search.book
        with self.search.timed("records"):
            book.record([row])
        self.holding.discard(book.key(row.task, row.arch))
        book.unobserved[row.task].append(row.trial)
        if len(book.unobserved[row.task]) >= self.search.cfg.batch_size:
            self._learn(row.task)

    def _learn(self, task: str) -> None:
        book = self.search.book
        rows = [book.log.rows[trial] for trial in book.unobserved.pop(task)]
        proposals = [Proposal(row.decisions, row.log_prob) for row in rows]
        self.search.learn(task, rows, proposals, step=self.search.step, trials=len(book))
