"""Stopping bad children early: the bar a child's validation accuracy must clear after each epoch.

A pruner turns the learning curves of a task's earlier trials into ``bars``, a map from
epoch to the best validation accuracy a child must have reached by then to go on. The
bars travel with the request, and the child checks itself after each validation
(``lightning_modules.trainer.PruneBelow``): no message between worker and driver while a
child trains, so pruning works unchanged on every executor. Because the bars depend only
on trials recorded before the child was proposed, a seeded sequential search with
pruning resumes to the identical trial sequence.

- ``median`` (Optuna's ``MedianPruner``): after ``warmup_epochs``, stop a child whose
  best accuracy so far is below the median of the task's finished trials at that epoch.
- ``asha`` (asynchronous successive halving, as Ray Tune's ``ASHAScheduler`` stops
  trials): rungs at ``min_epochs * reduction_factor**k`` epochs; at a rung a child goes
  on only if it is in the top ``1/reduction_factor`` of the earlier trials that reached
  that rung (pruned ones included).

A curve is compared by its running best (a child is scored by its best epoch), and a
finished child that stopped early holds its final best at every later epoch: it was
stopped because it had converged, and had it gone on, its best could not have dropped.
No bar is set until ``startup_trials`` trials give a value for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PRUNERS = ("none", "median", "asha")


@dataclass(frozen=True)
class Curve:
    """A trial's validation accuracy after each epoch, and whether it ran to its own end."""

    accuracies: Sequence[float]
    finished: bool  # trained until it converged or ran out of epochs (not pruned)

    def best_at(self, epoch: int) -> float | None:
        """The best accuracy by ``epoch`` (1-based); None where the trial never got there."""
        if len(self.accuracies) >= epoch:
            return max(self.accuracies[:epoch])
        return max(self.accuracies) if self.finished and self.accuracies else None


def curve_of(status: str, metrics: dict[str, Any]) -> Curve | None:
    """The curve a trial record holds; None for a trial that records none (failed, or older than pruning).

    A time-limited child's last point may be a part-trained epoch's; it is kept as that epoch's.
    """
    accuracies = metrics.get("val_curve")
    if status not in ("ok", "pruned") or not accuracies:
        return None
    # A child stopped by its time limit did not reach its own end: its best could still have grown.
    return Curve(accuracies, finished=status == "ok" and metrics.get("stopped_by") != "time_limit")


def rungs(min_epochs: int, reduction_factor: int, up_to: int) -> list[int]:
    """ASHA's rungs: ``min_epochs * reduction_factor**k`` up to epoch ``up_to``."""
    epochs, epoch = [], min_epochs
    while epoch <= up_to:
        epochs.append(epoch)
        epoch *= reduction_factor
    return epochs


@dataclass(frozen=True)
class Pruner:
    """A pruner's settings (``search.pruner*``, validated by ``SearchConfig``) and the bars they set.

    Bars go up to the longest curve recorded; a child never checks one at its last
    epoch (``trainer.max_epochs``), where stopping would save nothing.
    """

    kind: str = "none"
    startup_trials: int = 5  # trials of the task that must give a value before a bar is set
    warmup_epochs: int = 1  # median: the first epoch with a bar
    min_epochs: int = 1  # asha: the first rung
    reduction_factor: int = 3  # asha: the top 1/reduction_factor of each rung goes on

    def bars(self, curves: Iterable[Curve]) -> dict[int, float]:
        """Epoch -> the best validation accuracy a child must have reached by then to go on."""
        curves = list(curves)
        if self.kind == "none" or not curves:
            return {}
        longest = max(len(curve.accuracies) for curve in curves)
        if self.kind == "median":
            return self._median_bars(curves, longest)
        return self._asha_bars(curves, longest)

    def _median_bars(self, curves: list[Curve], longest: int) -> dict[int, float]:
        finished = [curve for curve in curves if curve.finished]
        if len(finished) < self.startup_trials:
            return {}
        return {
            epoch: float(np.median([curve.best_at(epoch) for curve in finished]))
            for epoch in range(self.warmup_epochs, longest + 1)
        }

    def _asha_bars(self, curves: list[Curve], longest: int) -> dict[int, float]:
        bars = {}
        for epoch in rungs(self.min_epochs, self.reduction_factor, longest):
            reached = [value for curve in curves if (value := curve.best_at(epoch)) is not None]
            if len(reached) >= self.startup_trials:
                bars[epoch] = float(np.percentile(reached, 100 * (1 - 1 / self.reduction_factor)))
        return bars
