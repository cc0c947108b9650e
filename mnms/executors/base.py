"""The seam between the search and child training: requests in, outcomes out, in order.

The search never trains a child itself; it hands a batch of ``TrialRequest`` to an
``Executor`` and gets one ``TrialOutcome`` per request back in the same order. An
executor passes each request to a ``Runner`` (``ChildRunner`` in ``runner.py``), here
or in a worker process; it never looks inside a child, so it imports neither torch
nor Lightning.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# pruned: stopped by the search's pruner, with the metrics of its best epoch so far.
STATUSES = ("ok", "pruned", "failed", "timeout", "diverged")


@dataclass(frozen=True)
class TrialRequest:
    trial: int
    task: str
    arch: dict[str, Any]  # Architecture fields; any left out take the Architecture defaults
    seed: int
    prune_below: dict[int, float] = field(default_factory=dict)  # the pruner's bars (mnms.search.pruning)


@dataclass(frozen=True)
class TrialOutcome:
    status: str  # one of STATUSES
    metrics: dict[str, Any] = field(default_factory=dict)  # ChildResult fields when status is ok or pruned
    error: str | None = None
    wall_seconds: float = 0.0


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
    """Evaluates a batch of trials; outcomes come back in request order.

    ``Config`` is the dataclass of its ``executor`` config section, whose ``kind`` (no
    default) is the executor's name in the registry, ``mnms.executors``, which builds it as
    ``cls(runner, config)``.
    """

    Config: ClassVar[type]

    @abstractmethod
    def evaluate(self, requests: Sequence[TrialRequest]) -> list[TrialOutcome]: ...

    def close(self) -> None:  # noqa: B027 - a default, not abstract: an executor may hold nothing to release
        """Release workers; the sequential executor holds none."""


class SequentialExecutor(Executor):
    """One child after another in this process: the default, and the reference order."""

    Config = SequentialConfig

    def __init__(self, runner: Runner, config: SequentialConfig | None = None) -> None:
        self.runner = runner

    def evaluate(self, requests: Sequence[TrialRequest]) -> list[TrialOutcome]:
        return [self.runner(request) for request in requests]
