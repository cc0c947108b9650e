"""What the search loop talks to: propose architectures for a task, observe their rewards.

A strategy owns all of its randomness (one ``torch.Generator``) and all of its
learning state, and ``state_dict`` captures both, so a search resumed from a
checkpoint proposes exactly what the uninterrupted search would have.

Adding another searcher means one more ``Strategy`` subclass and one more branch
in ``build_strategy``, as for the Optuna baseline (``mnms.optuna_strategy``:
``propose`` = ask, ``observe`` = tell).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from mnms.controller import Controller, ControllerConfig
from mnms.policy import Experience, PolicyConfig, ReplayBank, TaskBaselines, ppo_update, reinforce_update
from mnms.search_space import SearchSpace
from mnms.utils.config import from_config

STRATEGY_KINDS = ("ppo", "reinforce", "random", "optuna")


@dataclass
class Proposal:
    arch: dict[str, Any]  # plain dict of the active decisions' values
    log_prob: float  # behaviour log-prob under the proposing policy (0.0 for random search)


class Strategy(ABC):
    name: str

    @abstractmethod
    def propose(self, task: str, n: int) -> list[Proposal]:
        """``n`` architectures to train next for ``task``."""

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


class PolicyGradientStrategy(Strategy):
    """The multitask controller trained by REINFORCE (on-policy) or PPO (off-policy, replay bank)."""

    def __init__(
        self,
        controller: Controller,
        optimizer: torch.optim.Optimizer,
        baselines: TaskBaselines,
        bank: ReplayBank | None,
        config: PolicyConfig,
        generator: torch.Generator,
    ) -> None:
        if (bank is None) != (config.algorithm == "reinforce"):
            raise ValueError("PPO needs a replay bank and REINFORCE uses none")
        self.name = config.algorithm
        self.controller = controller
        self.optimizer = optimizer
        self.baselines = baselines
        self.bank = bank
        self.config = config
        self.generator = generator

    def propose(self, task: str, n: int) -> list[Proposal]:
        archs = self.controller.sample(task, n, self.generator)
        with torch.no_grad():
            log_probs, _ = self.controller.log_prob_and_entropy(task, archs)
        return [Proposal(arch, float(lp)) for arch, lp in zip(archs, log_probs)]

    def observe(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        if len(proposals) != len(rewards):
            raise ValueError(f"got {len(rewards)} rewards for {len(proposals)} proposals")
        if not all(math.isfinite(r) for r in rewards):
            raise ValueError(f"rewards must be finite (a NaN would poison the task's baseline), got {rewards}")
        self.baselines.update(task, rewards)
        if self.bank is None:
            stats = reinforce_update(
                self.controller, self.optimizer, self.baselines, self.config,
                task, [p.arch for p in proposals], rewards,
            )
        else:
            self.bank.add([Experience(task, dict(p.arch), float(r), p.log_prob) for p, r in zip(proposals, rewards)])
            stats = ppo_update(self.controller, self.optimizer, self.baselines, self.config, self.bank, self.generator)
        return {**stats, "baseline": self.baselines.mean[task], "reward_mean": sum(rewards) / len(rewards)}

    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        # Its own fixed-seed generator: inspecting the policy must not change what is sampled next.
        return self.controller.choice_probabilities(task)

    def greedy(self, task: str) -> dict[str, Any]:
        """The controller's single most likely architecture for ``task`` (greedy decoding)."""
        return self.controller.greedy(task)

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baselines": self.baselines.state_dict(),
            "bank": None if self.bank is None else self.bank.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines.load_state_dict(state["baselines"])
        if self.bank is not None:
            self.bank.load_state_dict(state["bank"])
        self.generator.set_state(state["generator"])


class RandomStrategy(Strategy):
    """Random search: every active decision uniform over its choices; learns nothing."""

    name = "random"

    def __init__(self, space: SearchSpace, generator: torch.Generator) -> None:
        self.space = space
        self.generator = generator

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


def build_strategy(
    kind: str,
    space: SearchSpace,
    task_names: list[str],
    controller_cfg: Mapping[str, Any],
    policy_cfg: Mapping[str, Any],
    seed: int,
) -> Strategy:
    """Build a strategy from plain config mappings (``conf/controller/<kind>.yaml``'s ``network`` and ``policy``).

    ``kind`` also names the policy algorithm, so ``policy_cfg`` need not repeat it.
    The controller's initial weights and all later sampling derive from ``seed``
    without touching torch's global random state.
    """
    if kind not in STRATEGY_KINDS:
        raise ValueError(f"unknown strategy kind {kind!r}; choose one of {list(STRATEGY_KINDS)}")
    if kind == "random":
        if controller_cfg or policy_cfg:
            raise ValueError("random search has no controller or policy settings; leave 'network' and 'policy' empty")
        return RandomStrategy(space, torch.Generator().manual_seed(seed))
    if kind == "optuna":
        from mnms.optuna_strategy import OptunaConfig, OptunaStrategy  # optional baseline: import only when used

        if controller_cfg:
            raise ValueError("controller=optuna has no network; leave 'network' empty and put TPE settings under 'policy'")
        return OptunaStrategy(space, task_names, from_config(OptunaConfig, policy_cfg), seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controller = Controller(space, task_names, from_config(ControllerConfig, controller_cfg))
    return policy_gradient_strategy(kind, controller, policy_cfg, seed)


def policy_gradient_strategy(
    kind: str, controller: Controller, policy_cfg: Mapping[str, Any], seed: int
) -> PolicyGradientStrategy:
    """PPO or REINFORCE training ``controller`` (a new one, or a pre-trained one for transfer).

    The optimiser covers only parameters that require gradients, so a partly frozen
    controller keeps its frozen weights exactly.
    """
    if policy_cfg.get("algorithm", kind) != kind:
        raise ValueError(
            f"policy.algorithm={policy_cfg['algorithm']!r} contradicts kind={kind!r}; drop policy.algorithm"
        )
    policy = from_config(PolicyConfig, {**policy_cfg, "algorithm": kind})
    trainable = [p for p in controller.parameters() if p.requires_grad]
    return PolicyGradientStrategy(
        controller=controller,
        optimizer=torch.optim.Adam(trainable, lr=policy.learning_rate),
        baselines=TaskBaselines(policy.baseline_decay),
        bank=ReplayBank(policy.bank_capacity) if kind == "ppo" else None,
        config=policy,
        generator=torch.Generator().manual_seed(seed),
    )
