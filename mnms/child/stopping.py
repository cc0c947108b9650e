"""The pruning stop rule: whether a child stops after an epoch, given the search pruner's bars.

The bars come from the search (``mnms.search.pruning``) and travel with the request;
the rule is applied where the child trains (``lightning_modules.trainer.PruneBelow``) and
where a benchmark replays finished curves (``bench/pruning.py``), so both stop the same
children at the same epochs.
"""

from __future__ import annotations

from collections.abc import Mapping


def stops_after(bars: Mapping[int, float], epoch: int, best: float, max_epochs: int) -> bool:
    """Whether a child whose best validation accuracy by ``epoch`` (1-based) is ``best`` is stopped there.

    Only below the epoch's bar, and never at ``max_epochs``, the child's last epoch, where
    stopping would save nothing. A child that stops after this epoch anyway (out of time,
    or converged) is not pruned: its trainer says so, and ``PruneBelow`` defers to it.
    """
    bar = bars.get(epoch)
    return bar is not None and epoch < max_epochs and best < bar
