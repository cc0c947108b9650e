"""A child's cost: in the reward (``search.cost``), and in the trade-off a search found (each task's Pareto front).

The cost is ``flops`` (``ChildResult.flops``: counted, so the same on every machine and
every run, and a seeded search and its resume stay exactly reproducible;
mnms/child/flops.py) or ``seconds`` (measured training seconds: what a user pays on this
machine, but another load gives another reward). ``summary.json`` holds each task's front
and ``child.select.within`` picks from it.

With ``search.cost.shape=none`` (the paper, the default) a child's reward is its
validation score. Otherwise the controller learns from the score shaped by what the child
cost, against a per-task target T:

- ``mnas`` (MnasNet, Tan et al. 2019): ``score * (cost / T) ** weight``; weight -0.07
  makes twice the cost worth about 5% of the score, and a child cheaper than T gains.
- ``abs`` (TuNAS, Bender et al. 2020): ``score + weight * |cost / T - 1|``; weight -0.1.
  A child is pulled towards T from both sides: for a search that should use a budget,
  not minimise it.

T is ``search.cost.target``, or, when that is null, the median cost of the task's first
``target_children`` trained children that finished, the child being rewarded included
(the first child of a task is its own target, so its reward is its score). Only the
controller's reward is shaped: the trial record keeps every score in ``metrics``, and the
per-task advantage keeps tasks comparable.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from mnms.executors.trial import Result, finished
from mnms.utils.config import check, is_int, is_number

MEASURES = {"flops": "flops", "seconds": "train_seconds"}  # a cost's name -> the ChildResult field holding it
SHAPES = ("none", "mnas", "abs")
DEFAULT_WEIGHTS = {"mnas": -0.07, "abs": -0.1}
T = TypeVar("T")


@dataclass(frozen=True)
class CostConfig:
    """``search.cost``: whether and how a child's cost shapes the reward the controller learns from."""

    section: ClassVar[str] = "search.cost"

    shape: str = "none"  # none | mnas | abs
    measure: str = "flops"  # flops (reproducible) | seconds (measured: not reproducible)
    weight: float | None = None  # null: the shape's published value (mnas -0.07, abs -0.1)
    target: float | None = None  # T in the measure's unit; null: from the task's first children
    target_children: int = 8

    def __post_init__(self) -> None:
        check(self, "shape", self.shape in SHAPES, f"one of {list(SHAPES)}")
        check(self, "measure", self.measure in MEASURES, f"one of {list(MEASURES)}")
        check(
            self,
            "weight",
            self.weight is None or (is_number(self.weight) and -1.0 <= self.weight < 0.0),
            "null (the shape's published value) or a number in [-1, 0): a negative weight makes cost count against "
            "a child; use search.cost.shape=none for no cost",
        )
        check(
            self,
            "target",
            self.target is None or (is_number(self.target) and self.target > 0),
            f"null (the median of each task's first children) or a positive number of {self.measure}",
        )
        check(self, "target_children", is_int(self.target_children) and self.target_children >= 1, "an integer >= 1")

    @property
    def exponent(self) -> float:
        """The weight in use: the configured one, or the shape's published value."""
        return self.weight if self.weight is not None else DEFAULT_WEIGHTS.get(self.shape, 0.0)


def cost_of(metrics: Mapping[str, Any], measure: str, setting: str = "search.cost.measure") -> float:
    """A child's cost in ``measure``; a record that lacks it (older than mnms 0.7, or a table that did not
    count it) is an error naming the ``setting`` and the measure that would work."""
    value = metrics.get(MEASURES[measure])
    if not is_number(value) or value <= 0:
        other = next(name for name in MEASURES if name != measure)
        raise ValueError(
            f"{setting}={measure} but a child's result has no {MEASURES[measure]} ({value!r}): its record "
            f"predates counting it, or came from a table without it; use {setting}={other}"
        )
    return float(value)


class CostReward:
    """The reward the controller learns from: a child's score, shaped by its cost against the task's target.

    ``feed`` sees every trained child as it is recorded (a restored search feeds its log
    first): in trial order in a sync search, so the derived target of each trial is the
    same in a search and its resume; in finishing order in an async one, whose order varies.
    """

    def __init__(self, cfg: CostConfig) -> None:
        self.cfg = cfg
        self.first: defaultdict[str, list[float]] = defaultdict(list)  # per task, the first children's costs
        self.fed: set[int] = set()

    def feed(self, trial: int, task: str, result: Result) -> None:
        """Count a trained child towards its task's target (only finished ones, the first ``target_children``)."""
        if self.cfg.shape == "none" or self.cfg.target is not None or trial in self.fed or not finished(result):
            return
        self.fed.add(trial)
        if len(self.first[task]) < self.cfg.target_children:
            self.first[task].append(cost_of(result.metrics, self.cfg.measure))

    def target(self, task: str) -> float | None:
        if self.cfg.target is not None:
            return float(self.cfg.target)
        return statistics.median(self.first[task]) if self.first[task] else None

    def shaped(self, task: str, score: float, metrics: Mapping[str, Any]) -> float:
        """``score`` shaped by the child's cost (``metrics``); the score itself while there is no target."""
        target = self.target(task)
        if self.cfg.shape == "none" or target is None:
            return score
        ratio = cost_of(metrics, self.cfg.measure) / target
        if self.cfg.shape == "mnas":
            return score * ratio**self.cfg.exponent
        return score + self.cfg.exponent * abs(ratio - 1.0)


def pareto_front(rows: Iterable[Any], task: str, score: str, measure: str) -> list[dict[str, Any]]:
    """``task``'s finished children that no other beats on both ``score`` and cost, cheapest first.

    One entry per distinct architecture (its first trial: identical children share a
    result), each with its trial, score and both costs. Children without the cost
    (records older than mnms 0.7) are left out.
    """
    children: dict[str, Any] = {}
    for row in rows:
        cost = row.metrics.get(MEASURES[measure]) if finished(row) else None
        if row.task == task and is_number(cost) and cost > 0:
            children.setdefault(json.dumps(row.arch, sort_keys=True), row)
    front = nondominated(children.values(), lambda r: r.metrics[MEASURES[measure]], lambda r: r.metrics[score])
    return [
        {
            "trial": row.trial,
            score: row.metrics[score],
            "flops": row.metrics.get("flops"),
            "train_seconds": row.metrics.get("train_seconds"),
        }
        for row in front
    ]


def nondominated(items: Iterable[T], cost: Callable[[T], float], score: Callable[[T], float]) -> list[T]:
    """The ``items`` no other beats on both ``score`` (higher) and ``cost`` (lower), cheapest first; of
    equal cost and score, the first given."""
    front: list[T] = []
    for item in sorted(items, key=lambda item: (cost(item), -score(item))):  # stable: ties keep their order
        if not front or score(item) > score(front[-1]):
            front.append(item)
    return front
