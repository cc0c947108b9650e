"""The controller trained by policy gradient: per-task baselines, a replay bank, REINFORCE and PPO.

Rewards of different tasks live on different scales (one task tops out at 0.6
accuracy, another at 0.95), so each task has its own moving baseline and the
advantage is normalised per task; every task then pulls on the shared controller
with a similar force.  The paper found plain on-policy training unable to learn a
different model per task and trained off-policy with PPO on a multitask replay bank
of (task, architecture, reward, behaviour log-prob); both algorithms are here, as the
strategies ``ppo`` and ``reinforce``, which differ only in their update.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from mnms.search.controller import Controller, ControllerConfig
from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy
from mnms.utils.config import check, is_int, is_number
from mnms.utils.threads import torch_threads

ADVANTAGES = ("relative", "std", "raw")
ANCHORS = ("behaviour", "pre_update")
KL_SAMPLES = 64  # architectures drawn from the pre-update policy to estimate an update's KL


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of the policy-gradient update.

    ``advantage``: ``relative`` is the paper's ``(R - b) / b``; ``std`` divides
    ``R - b`` by the task's running reward std; ``raw`` is ``R - b``. The defaults,
    ``std`` with one PPO epoch per update, won on the tabular benchmark's training tasks
    (docs/benchmarks.md); the paper's relative advantage with 4 epochs is ``strategy=ppo_paper``.
    ``embedding_learning_rate``: the task embeddings' own rate (rows and descriptor
    projection); null is ``learning_rate``. Task vectors get one gradient per task
    against the body's one per trial, so at the body's rate they barely leave their start.
    ``ppo_anchor``: what PPO's importance ratio compares the policy with. ``behaviour``
    (the paper's) is the log-prob each trial was proposed with, so an old trial of the
    bank, proposed by a policy the controller has since left, starts an update with a
    ratio far outside the clip; ``pre_update`` is the policy as the update starts, so
    the clip bounds what one update moves, with the behaviour log-prob kept as an
    importance weight truncated at 1 on the advantage.
    ``elite_weight``: the weight of a term every update adds to its loss, the negative
    log-likelihood of each task's ``elite_size`` best architectures so far (priority queue
    training, Abolafia et al., 2018). Under ``search.repeats=redraw`` the policy only learns
    from architectures it had not tried, so without it its most probable architecture drifts
    to the best of the latest batches: on the tabular benchmark the mode was within a point
    of the task's best on half the tasks, against 92% with 0.03 (docs/benchmarks.md). The
    paper's is 0.
    PPO fields (``ppo_*``, ``minibatch_size``, ``bank_capacity``) are ignored by REINFORCE.
    """

    section: ClassVar[str] = "strategy.policy"

    learning_rate: float = 0.01  # Adam
    embedding_learning_rate: float | None = None
    entropy_weight: float = 0.005  # bonus on the entropy summed over active decisions
    baseline_decay: float = 0.9  # per-task EMA of rewards
    advantage: str = "std"
    ppo_clip: float = 0.2  # clip the importance ratio to [1 - clip, 1 + clip]
    ppo_epochs: int = 1  # shuffled passes over the bank after every batch of rewards
    ppo_anchor: str = "behaviour"
    minibatch_size: int = 32
    bank_capacity: int = 64  # most recent trials (all tasks) kept for replay
    max_grad_norm: float = 1.0
    elite_weight: float = 0.03
    elite_size: int = 1  # each task's best distinct architectures the elite term keeps probable

    def __post_init__(self) -> None:
        check(self, "advantage", self.advantage in ADVANTAGES, f"one of {list(ADVANTAGES)}")
        check(self, "ppo_anchor", self.ppo_anchor in ANCHORS, f"one of {list(ANCHORS)}")
        check(self, "learning_rate", is_number(self.learning_rate) and self.learning_rate > 0, "a number > 0")
        check(
            self,
            "embedding_learning_rate",
            self.embedding_learning_rate is None
            or (is_number(self.embedding_learning_rate) and self.embedding_learning_rate > 0),
            "a number > 0, or null for learning_rate",
        )
        check(self, "entropy_weight", is_number(self.entropy_weight) and self.entropy_weight >= 0, "a number >= 0")
        check(
            self,
            "baseline_decay",
            is_number(self.baseline_decay) and 0 <= self.baseline_decay < 1,
            "a number in [0, 1)",
        )
        check(self, "ppo_clip", is_number(self.ppo_clip) and 0 < self.ppo_clip < 1, "a number in (0, 1)")
        check(self, "max_grad_norm", is_number(self.max_grad_norm) and self.max_grad_norm > 0, "a number > 0")
        check(self, "elite_weight", is_number(self.elite_weight) and self.elite_weight >= 0, "a number >= 0")
        for name in ("ppo_epochs", "minibatch_size", "bank_capacity", "elite_size"):
            check(self, name, is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")


@dataclass(frozen=True)
class PolicyGradientConfig:
    """The ``strategy`` section of ``ppo`` and ``reinforce``: which update, the controller, how it learns."""

    section: ClassVar[str] = "strategy"

    kind: str  # ppo | reinforce
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


class TaskBaselines:
    """Per-task exponential moving average and variance of rewards.

    The first reward of a task initialises its mean (variance 0).  Strategies fold
    a batch in *before* scoring it: the first batch of a task then already has a
    baseline to be compared with, and the running variance includes the newest
    reward, which keeps the ``std`` advantage bounded (about
    ``1 / sqrt(decay * (1 - decay))``) even while a task has few rewards.
    """

    EPSILON = 1e-3  # floor of the normaliser, so a baseline near zero cannot blow up the advantage

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.mean: dict[str, float] = {}
        self.var: dict[str, float] = {}

    def update(self, task: str, rewards: Sequence[float]) -> None:
        for reward in map(float, rewards):
            if task not in self.mean:
                self.mean[task], self.var[task] = reward, 0.0
                continue
            delta = reward - self.mean[task]
            self.mean[task] += (1 - self.decay) * delta
            self.var[task] = self.decay * (self.var[task] + (1 - self.decay) * delta**2)

    def advantage(self, task: str, reward: float, mode: str) -> float:
        """How much better than the task's baseline ``reward`` is, on a task-independent scale."""
        delta = reward - self.mean[task]
        if mode == "relative":
            return delta / max(abs(self.mean[task]), self.EPSILON)
        if mode == "std":
            return delta / max(math.sqrt(self.var[task]), self.EPSILON)
        return delta

    def state_dict(self) -> dict[str, Any]:
        return {"mean": dict(self.mean), "var": dict(self.var)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean, self.var = dict(state["mean"]), dict(state["var"])


@dataclass(frozen=True)
class Experience:
    """One evaluated child: what PPO replays."""

    task: str
    arch: dict[str, Any]
    reward: float
    log_prob: float  # under the controller that proposed it (the behaviour policy)


class ReplayBank:
    """The most recent ``capacity`` experiences of all tasks (oldest dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.items: deque[Experience] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, experiences: Sequence[Experience]) -> None:
        self.items.extend(experiences)

    def state_dict(self) -> dict[str, Any]:
        # Plain containers only, so the state loads with torch.load(weights_only=True).
        return {"items": [asdict(e) for e in self.items]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.items.clear()
        self.items.extend(Experience(**e) for e in state["items"])


class TaskElites:
    """Each task's ``size`` best distinct architectures so far, by reward (earlier first on ties)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    def add(self, task: str, archs: Sequence[Mapping[str, Any]], rewards: Sequence[float]) -> None:
        kept = self.items.setdefault(task, [])
        for arch, reward in zip(archs, rewards):
            if all(arch != other for _, other in kept):
                kept.append((float(reward), dict(arch)))
        kept.sort(key=lambda item: -item[0])  # stable: an earlier architecture stays ahead of a later equal one
        del kept[self.size :]

    def pairs(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Every task's elites as (task names, architectures), for one pass of the controller."""
        tasks = [task for task, kept in self.items.items() for _ in kept]
        return tasks, [arch for kept in self.items.values() for _, arch in kept]

    def state_dict(self) -> dict[str, Any]:
        return {task: [[reward, arch] for reward, arch in kept] for task, kept in self.items.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.items = {task: [(reward, dict(arch)) for reward, arch in kept] for task, kept in state.items()}


def elite_loss(controller: Controller, elites: TaskElites) -> torch.Tensor:
    """Mean negative log-likelihood of every task's elites (0 with none yet)."""
    tasks, archs = elites.pairs()
    if not archs:
        return torch.zeros(())
    log_prob, _ = controller.log_prob_and_entropy(tasks, archs)
    return -log_prob.mean()


def parameter_groups(controller: Controller, config: PolicyConfig) -> list[dict[str, Any]]:
    """Adam's groups: with ``embedding_learning_rate``, the task embeddings at that rate and the rest at
    ``learning_rate``; without it one group, as before the setting existed (old checkpoints load).

    Only parameters that require gradients: a partly frozen controller keeps its frozen weights exactly.
    """
    trained = [(name, p) for name, p in controller.named_parameters() if p.requires_grad]
    if config.embedding_learning_rate is None:
        return [{"params": [p for _, p in trained], "lr": config.learning_rate}]
    groups: dict[bool, list[torch.nn.Parameter]] = {False: [], True: []}  # body first
    for name, parameter in trained:
        groups[name.startswith("task_embedding.")].append(parameter)
    rates = {True: config.embedding_learning_rate, False: config.learning_rate}
    return [{"params": params, "lr": rates[is_embedding]} for is_embedding, params in groups.items() if params]


def _step(controller: Controller, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> float:
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(controller.parameters(), max_grad_norm)
    optimizer.step()
    return float(grad_norm)


@torch_threads(1)
def reinforce_update(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    baselines: TaskBaselines,
    config: PolicyConfig,
    task: str,
    archs: Sequence[Mapping[str, Any]],
    rewards: Sequence[float],
    elites: TaskElites,
) -> dict[str, float]:
    """One on-policy step: raise the log-prob of architectures that beat the task's baseline.

    ``baselines`` must already include ``rewards``.
    """
    advantages = torch.tensor([baselines.advantage(task, r, config.advantage) for r in rewards])
    log_prob, entropy = controller.log_prob_and_entropy(task, archs)
    policy_loss = -(advantages * log_prob).mean()
    loss = policy_loss - config.entropy_weight * entropy.mean()
    if config.elite_weight:
        loss = loss + config.elite_weight * elite_loss(controller, elites)
    grad_norm = _step(controller, optimizer, loss, config.max_grad_norm)
    return {
        "policy_loss": policy_loss.item(),
        "entropy": entropy.mean().item(),
        "advantage_mean": float(advantages.mean()),
        "grad_norm": grad_norm,
    }


@torch_threads(1)
def ppo_update(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    baselines: TaskBaselines,
    config: PolicyConfig,
    bank: ReplayBank,
    generator: torch.Generator,
    elites: TaskElites,
) -> dict[str, float]:
    """Off-policy PPO over the multitask bank: ``ppo_epochs`` shuffled passes of minibatches.

    Each experience's advantage uses its task's *current* baseline, so old children
    that the policy has since outgrown are pushed down.  The clipped importance ratio
    (against the behaviour log-prob, or the pre-update policy: ``ppo_anchor``) keeps
    each update close to the policy it compares with.
    """
    experiences = list(bank.items)
    tasks = [e.task for e in experiences]
    archs = [e.arch for e in experiences]
    advantages = torch.tensor([baselines.advantage(e.task, e.reward, config.advantage) for e in experiences])
    behaviour = torch.tensor([e.log_prob for e in experiences])
    anchor = behaviour
    if config.ppo_anchor == "pre_update":
        with torch.no_grad():
            anchor, _ = controller.log_prob_and_entropy(tasks, archs)
        advantages = advantages * (anchor - behaviour).exp().clamp(max=1.0)
    totals = {"policy_loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0, "grad_norm": 0.0}
    steps = 0
    for _ in range(config.ppo_epochs):
        order = torch.randperm(len(experiences), generator=generator).tolist()
        for start in range(0, len(order), config.minibatch_size):
            batch = order[start : start + config.minibatch_size]
            log_prob, entropy = controller.log_prob_and_entropy([tasks[i] for i in batch], [archs[i] for i in batch])
            log_ratio = log_prob - anchor[batch]
            ratio = log_ratio.exp()
            adv = advantages[batch]
            clipped = ratio.clamp(1 - config.ppo_clip, 1 + config.ppo_clip)
            policy_loss = -torch.min(ratio * adv, clipped * adv).mean()
            loss = policy_loss - config.entropy_weight * entropy.mean()
            if config.elite_weight:
                loss = loss + config.elite_weight * elite_loss(controller, elites)
            totals["grad_norm"] += _step(controller, optimizer, loss, config.max_grad_norm)
            totals["policy_loss"] += policy_loss.item()
            totals["entropy"] += entropy.mean().item()
            totals["clip_fraction"] += ((ratio - 1).abs() > config.ppo_clip).float().mean().item()
            totals["approx_kl"] += ((ratio - 1) - log_ratio).mean().item()  # k3 estimator, >= 0
            steps += 1
    stats = {k: v / steps for k, v in totals.items()}
    stats["advantage_mean"] = float(advantages.mean())
    return stats


@torch_threads(1)
def policy_shift(controller: Controller, task: str, update: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``update`` and measure what it did to ``task``'s policy: KL(before || after), entropy before and after.

    Estimated on ``KL_SAMPLES`` architectures drawn from the pre-update policy with a
    generator of its own, so measuring never changes what the search samples.
    """
    archs = controller.sample(task, KL_SAMPLES, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, entropy_before = controller.log_prob_and_entropy(task, archs)
    stats = update()
    with torch.no_grad():
        after, entropy_after = controller.log_prob_and_entropy(task, archs)
    return {
        **stats,
        "kl_update": float((before - after).mean()),
        "task_entropy": float(entropy_after.mean()),
        "task_entropy_change": float((entropy_after - entropy_before).mean()),
    }


class PolicyGradientStrategy(Strategy):
    """The multitask controller and what trains it; ``_update`` is the algorithm (REINFORCE or PPO)."""

    Config = PolicyGradientConfig
    trains_controller = True
    # PPO's clipped ratio to the logged behaviour log-prob corrects for proposals made by an
    # older policy; REINFORCE learns from them too, slightly off-policy (README).
    asynchronous = True

    def __init__(self, controller: Controller, config: PolicyConfig, seed: int) -> None:
        self.controller = controller
        self.config = config
        self.optimizer = torch.optim.Adam(parameter_groups(controller, config), lr=config.learning_rate)
        self.baselines = TaskBaselines(config.baseline_decay)
        self.elites = TaskElites(config.elite_size)
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def build(
        cls,
        config: PolicyGradientConfig,
        space: SearchSpace,
        tasks: Sequence[str],
        seed: int,
        controller: Controller | None = None,
        descriptors: Mapping[str, torch.Tensor] | None = None,
    ) -> PolicyGradientStrategy:
        """A new controller drawn from ``seed`` (torch's global random state untouched), or ``controller`` to go on.

        ``descriptors`` (one per task) are what a new controller with ``task_descriptors`` projects.
        """
        if controller is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                controller = Controller(space, list(tasks), config.controller, descriptors=descriptors)
        return cls(controller, config.policy, seed)

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
        self.elites.add(task, [p.arch for p in proposals], rewards)
        stats = policy_shift(self.controller, task, lambda: self._update(task, proposals, rewards))
        return {**stats, "baseline": self.baselines.mean[task], "reward_mean": sum(rewards) / len(rewards)}

    @abstractmethod
    def _update(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        """One learning step from a batch whose rewards the baselines already include."""

    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        # Its own fixed-seed generator: inspecting the policy must not change what is sampled next.
        return self.controller.choice_probabilities(task)

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baselines": self.baselines.state_dict(),
            "elites": self.elites.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines.load_state_dict(state["baselines"])
        self.elites.load_state_dict(state.get("elites", {}))  # none before policy.elite_weight
        self.generator.set_state(state["generator"])


class ReinforceStrategy(PolicyGradientStrategy):
    """REINFORCE: one on-policy gradient step per batch of rewards, no replay."""

    unread_settings = (
        "policy.ppo_clip",
        "policy.ppo_epochs",
        "policy.ppo_anchor",
        "policy.minibatch_size",
        "policy.bank_capacity",
    )

    def _update(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        return reinforce_update(
            self.controller,
            self.optimizer,
            self.baselines,
            self.config,
            task,
            [p.arch for p in proposals],
            rewards,
            self.elites,
        )


class PPOStrategy(PolicyGradientStrategy):
    """PPO (the paper's choice): off-policy updates over a replay bank of the most recent trials of all tasks."""

    def __init__(self, controller: Controller, config: PolicyConfig, seed: int) -> None:
        super().__init__(controller, config, seed)
        self.bank = ReplayBank(config.bank_capacity)

    def _update(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        self.bank.add([Experience(task, dict(p.arch), float(r), p.log_prob) for p, r in zip(proposals, rewards)])
        return ppo_update(
            self.controller, self.optimizer, self.baselines, self.config, self.bank, self.generator, self.elites
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "bank": self.bank.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bank.load_state_dict(state["bank"])
