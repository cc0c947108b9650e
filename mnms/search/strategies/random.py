"""Random search: every active decision uniform over its choices; learns nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy


@dataclass(frozen=True)
class RandomConfig:
    """``strategy=random``: no settings."""

    section: ClassVar[str] = "strategy"

    kind: str


class RandomStrategy(Strategy):
    """Random search: every active decision uniform over its choices; learns nothing."""

    Config = RandomConfig
    asynchronous = True  # learns nothing, so any order of results is the same

    def __init__(self, space: SearchSpace, generator: torch.Generator) -> None:
        self.space = space
        self.generator = generator

    @classmethod
    def build(cls, config: RandomConfig, space: SearchSpace, tasks: Sequence[str], seed: int) -> RandomStrategy:
        return cls(space, torch.Generator().manual_seed(seed))

    def propose(self, task: str, n: int) -> list[Proposal]:
        proposals = []
        for _ in range(n):
            arch: dict[str, Any] = {}
            for decision in self.space.decisions:
                if decision.active(arch):
                    k = int(torch.randint(len(decision.choices), (), generator=self.generator))
                    arch[decision.name] = decision.choices[k]
            proposals.append(Proposal(arch, 0.0))
        return proposals

    def observe(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        return {}

    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        return {d.name: {str(c): 1.0 / len(d.choices) for c in d.choices} for d in self.space.decisions}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
