"""Search strategies behind ``base.Strategy``, and the registry the ``strategy`` config group selects from.

``ppo`` and ``reinforce`` train the multitask controller (``policy_gradient.py``);
``random`` and ``optuna`` (TPE, one study per task) are the baselines. Adding one is a
module, a line in ``STRATEGIES`` and a ``conf/strategy/<name>.yaml`` (CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mnms.search.controller import Controller
from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy
from mnms.search.strategies.optuna import OptunaStrategy
from mnms.search.strategies.policy_gradient import PPOStrategy, ReinforceStrategy
from mnms.search.strategies.random import RandomStrategy
from mnms.utils.config import ConfigError
from mnms.utils.registry import Registry

__all__ = ["STRATEGIES", "Proposal", "Strategy", "controller_strategy", "make_strategy", "strategy_config"]

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


def controller_strategy(kind: Any) -> type[Strategy]:
    """The strategy ``kind``, which must train a controller, to start from a pre-trained one."""
    cls = STRATEGIES[kind]
    if not cls.trains_controller:
        trainers = [name for name, strategy in STRATEGIES.items() if strategy.trains_controller]
        raise ConfigError(
            f"strategy={kind} trains no controller, so it cannot start from a pre-trained one "
            f"(transfer.from); use one of {trainers}"
        )
    return cls


def make_strategy(
    config: Any,
    space: SearchSpace,
    tasks: Sequence[str],
    seed: int,
    *,
    controller: Controller | None = None,
    descriptors: Mapping[str, torch.Tensor] | None = None,
) -> Strategy:
    """The strategy ``config`` describes; ``controller`` (a pre-trained one, for transfer) is where it starts.

    ``descriptors``: the tasks' descriptors, for a new controller with ``task_descriptors``.
    """
    if controller is None and descriptors is None:
        return STRATEGIES[config.kind].build(config, space, tasks, seed)
    return controller_strategy(config.kind).build(
        config, space, tasks, seed, controller=controller, descriptors=descriptors
    )
