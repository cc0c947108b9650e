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

from mnms.executors.trial import TrialOutcome, TrialRequest


class CostModel:
    """Mean observed wall seconds per ``TrialRequest.cost_key``, learned from the outcomes of a search.

    Requests without a key (``()``) count as one kind of child.
    """

    def __init__(self) -> None:
        self._totals: dict[Hashable, tuple[float, int]] = {}

    def record(self, request: TrialRequest, outcome: TrialOutcome) -> None:
        seconds, count = self._totals.get(request.cost_key, (0.0, 0))
        self._totals[request.cost_key] = (seconds + outcome.wall_seconds, count + 1)

    def predict(self, request: TrialRequest) -> float:
        """Expected wall seconds; ``inf`` for a kind of child not seen yet."""
        seconds, count = self._totals.get(request.cost_key, (0.0, 0))
        return seconds / count if count else float("inf")

    def longest_first(self, requests: Sequence[TrialRequest]) -> list[int]:
        """Indices of ``requests`` by predicted cost, slowest first; ties keep request order."""
        predicted = [self.predict(request) for request in requests]
        return sorted(range(len(requests)), key=lambda index: -predicted[index])
