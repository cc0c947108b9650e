"""Longest-predicted-first dispatch, so a batch spends less time waiting for its slowest child.

A controller step waits for all of its batch. With the batch handed out in sampling
order, a slow child that starts last keeps the other workers idle (docs/benchmarks.md,
"Parallel children"). Handing out the children predicted to be slowest first (the LPT
rule) lets the short ones fill in around them. The prediction is the mean wall time of
earlier trials with the same cost-driving fields; a child of an unseen kind goes first,
so its cost is learned early. Only the dispatch order changes: outcomes still come
back in request order, so the records do not depend on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from mnms.child.arch import Architecture

if TYPE_CHECKING:  # base.py imports this module
    from mnms.executors.base import TrialOutcome, TrialRequest

_DEFAULTS = Architecture().to_dict()  # for the fields a search space leaves out


def cost_key(request: TrialRequest) -> Hashable:
    """The fields that decide most of a child's wall time: its data, input layer and step count."""
    arch = {**_DEFAULTS, **request.arch}  # not Architecture(...): validating every request would slow dispatch
    return (
        request.task,
        arch["encoder"],
        arch["fine_tune"],
        arch["fine_tune_layers"],
        arch["conv_filters"] > 0,
        arch["wide"],
        arch["batch_size"],
    )


class CostModel:
    """Mean observed wall seconds per ``cost_key``, learned from the outcomes of a search."""

    def __init__(self) -> None:
        self._totals: dict[Hashable, tuple[float, int]] = {}

    def record(self, request: TrialRequest, outcome: TrialOutcome) -> None:
        key = cost_key(request)
        seconds, count = self._totals.get(key, (0.0, 0))
        self._totals[key] = (seconds + outcome.wall_seconds, count + 1)

    def predict(self, request: TrialRequest) -> float:
        """Expected wall seconds; ``inf`` for a kind of child not seen yet."""
        seconds, count = self._totals.get(cost_key(request), (0.0, 0))
        return seconds / count if count else float("inf")

    def longest_first(self, requests: Sequence[TrialRequest]) -> list[int]:
        """Indices of ``requests`` by predicted cost, slowest first; ties keep request order."""
        predicted = [self.predict(request) for request in requests]
        return sorted(range(len(requests)), key=lambda index: -predicted[index])
