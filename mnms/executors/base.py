"""The seam between the search and child training: requests in, outcomes out.

The search never trains a child itself. It hands ``TrialRequest`` objects to an
``Executor``: a whole batch to ``evaluate``, which returns one ``TrialOutcome`` per
request in request order (``search.mode=sync``), or one at a time to ``submit``,
collecting them from ``wait`` as they finish (``search.mode=async``). An executor passes
each request to a ``Runner`` (``ChildRunner`` in ``runner.py``), here or in a worker
process; it never looks inside a child, so it imports neither torch nor Lightning.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from mnms.executors.schedule import CostModel
from mnms.executors.trial import TrialOutcome, TrialRequest


class Runner(Protocol):
    """Trains the child a request names and never raises (``ChildRunner``); pickled to each worker once."""

    threads: int  # intra-op threads each child trains with; a pool of workers sizes itself by it

    def __call__(self, request: TrialRequest) -> TrialOutcome: ...

    def prepare_process(self) -> None:
        """Set up a worker process before its first request (e.g. torch's thread count)."""


@dataclass(frozen=True)
class SequentialConfig:
    """``executor=sequential``: no options."""

    section: ClassVar[str] = "executor"

    kind: str


class Executor(ABC):
    """Trains children: ``submit`` one, ``wait`` for any to finish; ``evaluate`` a whole batch.

    ``capacity`` is how many children it trains at once. Requests are told apart by
    ``trial``, unique among those submitted and not yet returned. ``Config`` is the
    dataclass of its ``executor`` config section, whose ``kind`` (no default) is the
    executor's name in the registry, ``mnms.executors``, which builds it as
    ``cls(runner, config)``.
    """

    Config: ClassVar[type]
    capacity: int = 1

    def __init__(self) -> None:
        self.costs = CostModel()  # wall seconds by kind of child, for slowest-first dispatch

    @abstractmethod
    def _submit(self, request: TrialRequest) -> None: ...

    @abstractmethod
    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]: ...

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Children submitted and not yet returned by ``wait``."""

    def submit(self, request: TrialRequest) -> None:
        """Start training ``request``'s child, or queue it until a worker is free."""
        self._submit(request)

    def wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Block until at least one submitted child has finished; each finished one with its outcome."""
        if not self.in_flight:
            raise RuntimeError("wait() with no child submitted would block forever")
        finished = self._wait()
        for request, outcome in finished:
            self.costs.record(request, outcome)
        return finished

    def evaluate(
        self, requests: Sequence[TrialRequest], on_done: Callable[[TrialOutcome], None] | None = None
    ) -> list[TrialOutcome]:
        """Train a batch, handed out slowest-predicted first; outcomes in request order. ``on_done`` hears of
        each child as it finishes (a progress bar that moves per child, not per batch)."""
        for index in self.costs.longest_first(requests):
            self.submit(requests[index])
        outcomes: dict[int, TrialOutcome] = {}
        while len(outcomes) < len(requests):
            for request, outcome in self.wait():
                outcomes[request.trial] = outcome
                if on_done is not None:
                    on_done(outcome)
        return [outcomes[request.trial] for request in requests]

    def close(self) -> None:  # noqa: B027 - a default, not abstract: an executor may hold nothing to release
        """Release workers; the sequential executor holds none."""


class SequentialExecutor(Executor):
    """One child after another in this process: the default, and the reference order."""

    Config = SequentialConfig

    def __init__(self, runner: Runner, config: SequentialConfig | None = None) -> None:
        super().__init__()
        self.runner = runner
        self._queue: deque[TrialRequest] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def _submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        request = self._queue.popleft()
        return [(request, self.runner(request))]
