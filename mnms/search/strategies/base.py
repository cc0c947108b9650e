"""What the search loop talks to: propose architectures for a task, observe their rewards.

A strategy owns all of its randomness (its own ``torch.Generator`` or sampler seeds) and
all of its learning state, and ``state_dict`` captures both, so a search resumed from a
checkpoint proposes exactly what the uninterrupted search would have. This is NNI's
ask/tell seam (``propose`` = ask, ``observe`` = tell) plus checkpointing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mnms.search.space import SearchSpace


@dataclass
class Proposal:
    arch: dict[str, Any]  # plain dict of the active decisions' values
    log_prob: float  # behaviour log-prob under the proposing policy (0.0 for random search)


class Strategy(ABC):
    """A search strategy, built by ``build`` from the dataclass of its ``strategy`` config section.

    ``trains_controller`` is the one statement of whether a strategy learns a controller
    that transfer, zero-shot proposals and reports can use; such a strategy exposes it as
    ``self.controller`` and can start from a pre-trained one (``build(..., controller=)``).
    """

    name: ClassVar[str]  # its name in the registry, which sets it (mnms.search.strategies.STRATEGIES)
    Config: ClassVar[type]  # the dataclass of its `strategy` section; its `kind` field (no default) is `name`
    trains_controller: ClassVar[bool] = False
    # Whether it can learn from any subset of its proposals, in any order, and be saved while
    # proposals are still out (what search.mode=async needs); a strategy says so explicitly.
    asynchronous: ClassVar[bool] = False
    # Dotted fields of its Config it never reads (a subclass sharing another's Config): they
    # change nothing it proposes, so a resumed search may change them (mnms.search.resume).
    unread_settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def build(cls, config: Any, space: SearchSpace, tasks: Sequence[str], seed: int) -> Strategy:
        """The strategy ``config`` describes, for ``tasks`` over ``space``, all randomness drawn from ``seed``."""

    @abstractmethod
    def propose(self, task: str, n: int) -> list[Proposal]:
        """``n`` architectures to train next for ``task``."""

    def discard(self, task: str, proposals: list[Proposal]) -> None:  # noqa: B027 - most strategies hold nothing
        """Forget ``proposals``: the search will neither train nor observe them (repeats it draws again,
        ``search.repeats=redraw``), so they must not count as evidence."""

    @abstractmethod
    def observe(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        """Learn from the rewards (in [0, 1]) of ``proposals``; return statistics worth logging."""

    @abstractmethod
    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        """For each decision, the probability of each choice (as ``str``) given the decision is made."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this strategy is.

        Like ``nn.Module.state_dict`` it may hold live tensors: save or deep-copy it
        before the strategy continues.
        """

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
