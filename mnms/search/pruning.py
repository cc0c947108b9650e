"""Stopping bad children early: the bar a child's validation accuracy must clear after each epoch.

A pruner turns the learning curves of a task's earlier trials into ``bars``, a map from
epoch to the best validation accuracy a child must have reached by then to go on. The
bars travel with the request, and the child checks itself after each validation
(``lightning_modules.trainer.PruneBelow``, by the rule ``mnms.child.stopping.stops_after``):
no message between worker and driver while a child trains, so pruning works unchanged on
every executor. Because the bars depend only on trials recorded before the child was
proposed (``Bars``), a seeded sequential search with pruning resumes to the identical
trial sequence. A pruned child's reward is the search's rule (``search.pruned_reward``).

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

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mnms.child.config import ChildTrainerConfig, validates_every_epoch
from mnms.executors.trial import Result, has_curve, reusable
from mnms.utils.config import ConfigError

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


def curve_of(result: Result) -> Curve | None:
    """The curve a trial's result holds; None for one that records none (failed, or older than pruning).

    A time-limited child's last point may be a part-trained epoch's; it is kept as that
    epoch's, but the curve is not finished: had the child gone on, its best could still have grown.
    """
    if not has_curve(result):
        return None
    return Curve(result.metrics["val_curve"], finished=reusable(result))


def rungs(min_epochs: int, reduction_factor: int, up_to: int) -> list[int]:
    """ASHA's rungs: ``min_epochs * reduction_factor**k`` up to epoch ``up_to``."""
    epochs, epoch = [], min_epochs
    while epoch <= up_to:
        epochs.append(epoch)
        epoch *= reduction_factor
    return epochs


@dataclass(frozen=True)
class Pruner:
    """A pruner's settings (``search.pruner*``: ``SearchConfig.pruning`` builds it) and the bars they set.

    Bars go up to the longest curve recorded; a child never checks one at its last
    epoch (``trainer.max_epochs``), where stopping would save nothing.
    """

    kind: str
    startup_trials: int  # trials of the task that must give a value before a bar is set
    warmup_epochs: int  # median: the first epoch with a bar
    min_epochs: int  # asha: the first rung
    reduction_factor: int  # asha: the top 1/reduction_factor of each rung goes on

    def check(self, trainer: ChildTrainerConfig) -> None:
        """Refuse settings that could never stop a child with ``trainer``'s budget, before anything trains."""
        if self.kind == "none":
            return
        if not validates_every_epoch(trainer):
            raise ConfigError(
                f"search.pruner={self.kind} judges children by their validation accuracy after each epoch, "
                "but trainer.patience=null with trainer.epoch_selection=last validates only at the end: "
                "set trainer.epoch_selection=best or a trainer.patience, or search.pruner=none"
            )
        first, name = (
            (self.warmup_epochs, "pruner_warmup_epochs")
            if self.kind == "median"
            else (self.min_epochs, "pruner_min_epochs")
        )
        if first >= trainer.max_epochs:  # a child is never stopped at its last epoch: that saves nothing
            raise ConfigError(
                f"search.{name}={first} with trainer.max_epochs={trainer.max_epochs}: search.pruner={self.kind} "
                f"could never stop a child (its first bar is at epoch {first}, and no child is stopped at its last "
                f"epoch): set search.{name} below {trainer.max_epochs}, or search.pruner=none"
            )

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


class Bars:
    """Each task's bars for a child proposed after a given trial, from the trials logged before it.

    Curves are read from the log once and a task's bars recomputed only when it has a new
    one: every submission asks, which at many workers would otherwise rescan the log.
    A reused trial adds no curve: its source's is already counted.
    """

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner
        self._curves: defaultdict[str, list[tuple[int, Curve]]] = defaultdict(list)  # task -> (trial, curve)
        self._read = 0  # log rows read into _curves
        self._cache: dict[str, tuple[int, dict[int, float]]] = {}  # task -> (curves used, bars)

    def before(self, trial: int, task: str, log: Sequence) -> dict[int, float]:
        """The bars for ``task`` from the trials of ``log`` (``TrialRecord``s) before ``trial``."""
        if self.pruner.kind == "none":
            return {}
        for row in log[self._read :]:
            if row.reused_from is None and (curve := curve_of(row)):
                self._curves[row.task].append((row.trial, curve))
        self._read = len(log)
        curves = self._curves[task]
        known = bisect.bisect_left(curves, trial, key=lambda item: item[0])  # trials are logged in order
        if self._cache.get(task, (-1, {}))[0] != known:
            self._cache[task] = (known, self.pruner.bars(curve for _, curve in curves[:known]))
        return dict(self._cache[task][1])  # each request its own
