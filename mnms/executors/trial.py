"""The trial vocabulary: what the search asks an executor for, what comes back, and what a status means.

Every caller reads a trial's status through the predicates here (``finished``,
``has_curve``, ``reusable``) rather than comparing strings, so a new status or a new
reason a child stops changes one module. The predicates take anything with a
``status`` and ``metrics``: a ``TrialOutcome`` fresh from a worker or a logged
``TrialRecord``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mnms.child.result import TIME_LIMIT

OK = "ok"  # trained and scored on its chosen epoch (time-limited children included)
PRUNED = "pruned"  # stopped by the search's pruner, with the metrics of its best epoch so far
FAILED = "failed"  # raised: an encoder that is not installed, a child that cannot be built, ...
TIMEOUT = "timeout"  # out of time before its first validation: nothing to score
DIVERGED = "diverged"  # a NaN loss or metric
STATUSES = (OK, PRUNED, FAILED, TIMEOUT, DIVERGED)


@dataclass(frozen=True)
class TrialRequest:
    trial: int
    task: str
    arch: dict[str, Any]  # Architecture fields; any left out take the Architecture defaults
    seed: int
    prune_below: dict[int, float] = field(default_factory=dict)  # the pruner's bars (mnms.search.pruning)
    # What decides most of the child's wall time (mnms.child.cost.cost_key), for slowest-first
    # dispatch: computed by the search, so an executor never reads an architecture.
    cost_key: Hashable = ()


@dataclass(frozen=True)
class TrialOutcome:
    status: str  # one of STATUSES
    metrics: dict[str, Any] = field(default_factory=dict)  # ChildResult fields when status is ok or pruned
    error: str | None = None
    wall_seconds: float = 0.0


class Result(Protocol):
    """A trial's result: a ``TrialOutcome`` or a logged ``TrialRecord``."""

    status: str
    metrics: Mapping[str, Any]


def finished(result: Result) -> bool:
    """Trained and scored (``ok``): a candidate for the task's best, a ranked architecture, a model."""
    return result.status == OK


def has_metrics(result: Result) -> bool:
    """Has validation and test scores: finished, or pruned with its best epoch's."""
    return result.status in (OK, PRUNED)


def has_curve(result: Result) -> bool:
    """Records a validation curve the pruner can learn from (trials older than pruning record none)."""
    return has_metrics(result) and bool(result.metrics.get("val_curve"))


def reusable(result: Result) -> bool:
    """Ran to its own end: finished and not stopped by its time limit.

    Its curve is complete and its result stands for an identical child trained later.
    Not a failure, nor a pruned child (later bars may let it through), nor a time-limited
    one (its score says how fast its machine was).
    """
    return finished(result) and result.metrics.get("stopped_by") != TIME_LIMIT
