"""A child's cost, and the accuracy/cost trade-off a search found for each task (its Pareto front).

The cost is ``flops`` (``ChildResult.flops``: counted, so the same on every machine and
every run; mnms/child/flops.py) or ``seconds`` (measured training seconds: what a user
pays on this machine, but another load gives another figure). ``summary.json`` holds each
task's front and ``child.select.within`` picks from it; shaping the controller's reward by
cost comes next (issue 29).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mnms.executors.trial import finished
from mnms.utils.config import is_number

MEASURES = {"flops": "flops", "seconds": "train_seconds"}  # a cost's name -> the ChildResult field holding it


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
    front: list[dict[str, Any]] = []
    best = float("-inf")
    for row in sorted(children.values(), key=lambda r: (r.metrics[MEASURES[measure]], -r.metrics[score], r.trial)):
        if row.metrics[score] > best:
            best = row.metrics[score]
            front.append(
                {
                    "trial": row.trial,
                    score: row.metrics[score],
                    "flops": row.metrics.get("flops"),
                    "train_seconds": row.metrics.get("train_seconds"),
                }
            )
    return front
