"""Search strategies behind ``base.Strategy``, and the registry the ``strategy`` config group selects from.

``ppo`` and ``reinforce`` train the multitask controller (``policy_gradient.py``);
``random`` and ``optuna`` (TPE, one study per task) are the baselines. Adding one is a
module, a line in ``STRATEGIES`` and a ``conf/strategy/<name>.yaml`` (CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mnms.search.controller import Controller
from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy
from mnms.search.strategies.optuna import OptunaStrategy
from mnms.search.strategies.policy_gradient import PPOStrategy, ReinforceStrategy
from mnms.search.strategies.random import RandomStrategy
from mnms.utils.config import ConfigError
from mnms.utils.registry import Registry

__all__ = ["STRATEGIES", "Proposal", "Strategy", "make_strategy", "strategy_config"]

STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    {
        "ppo": PPOStrategy,
        "reinforce": ReinforceStrategy,
        "random": RandomStrategy,
        "optuna": OptunaStrategy,
    },
)


def strategy_config(values: Any) -> Any:
    """The validated config of the ``strategy`` section; its ``kind`` picks the strategy and so the dataclass."""
    return STRATEGIES.config(values)


def make_strategy(
    config: Any, space: SearchSpace, tasks: Sequence[str], seed: int, *, controller: Controller | None = None
) -> Strategy:
    """The strategy ``config`` describes; ``controller`` (a pre-trained one, for transfer) is where it starts."""
    cls = STRATEGIES[config.kind]
    if controller is None:
        return cls.build(config, space, tasks, seed)
    if not cls.trains_controller:
        raise ConfigError(
            f"strategy={config.kind} trains no controller, so it cannot start from a pre-trained one; "
            f"use one of {[name for name, c in STRATEGIES.items() if c.trains_controller]}"
        )
    return cls.build(config, space, tasks, seed, controller=controller)
