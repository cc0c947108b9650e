"""The autoregressive LSTM controller of Multitask Neural Model Search.

At each step the LSTM reads the embedding of the previous decision's choice
concatenated with the task's embedding, and one softmax head per decision picks
that decision's value.  Decisions whose condition is false for the choices made so
far are skipped: no LSTM step, no log-prob, and the next active decision reads the
last *active* decision's choice.  Feeding the task vector at every step is what lets
one controller keep a different policy per task.

All n architectures of a call are unrolled together: a decision that is inactive
for some of them is computed for all and masked out, which keeps the hidden state of
those rows unchanged, exactly as if the step had been skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from mnms.search.space import SearchSpace
from mnms.search.task_embedding import TaskEmbedding
from mnms.utils.config import check, free, is_int, is_number
from mnms.utils.threads import torch_threads


@dataclass(frozen=True)
class ControllerConfig:
    """Sizes of the controller and how its logits are shaped.

    ``tanh_clip`` bounds logits to ``C * tanh(logits / temperature)`` so the policy
    can never become fully deterministic and keeps exploring (None disables it).
    ``task_descriptors``: task vectors are a learned projection of each task's descriptor
    plus a residual (``TaskEmbedding``), not free rows; the search computes the descriptors.
    ``uniform_start``: a new controller's softmax heads start at zero, so every decision
    starts uniform and a search's first batch is drawn as random search draws it; false
    is PyTorch's default initialisation, which favours a few architectures from the start
    (one held 10% of the probability among the tabular benchmark's 180), as every mnms
    controller did before the tabular benchmark. Small policy-head weights are the first
    advice of "What Matters in On-Policy RL" (Andrychowicz et al., 2021).
    """

    section: ClassVar[str] = "strategy.controller"

    hidden_size: int = 64
    choice_embedding_size: int = 32
    task_embedding_size: int = 32
    temperature: float = 1.0
    tanh_clip: float | None = 2.5
    task_descriptors: bool = False
    uniform_start: bool = free(
        True, "a search's starting weights are in the checkpoint it writes before its first trial"
    )

    def __post_init__(self) -> None:
        for name in ("hidden_size", "choice_embedding_size", "task_embedding_size"):
            check(self, name, is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")
        check(self, "temperature", is_number(self.temperature) and self.temperature > 0, "a number > 0")
        check(
            self,
            "tanh_clip",
            self.tanh_clip is None or (is_number(self.tanh_clip) and self.tanh_clip > 0),
            "a number > 0, or null to disable the clip",
        )
        check(self, "task_descriptors", isinstance(self.task_descriptors, bool), "true or false")
        check(self, "uniform_start", isinstance(self.uniform_start, bool), "true or false")


@dataclass
class Rollout:
    """The result of unrolling the controller over n architectures."""

    archs: list[dict[str, Any]]
    log_prob: torch.Tensor  # [n], summed over active decisions
    entropy: torch.Tensor  # [n], summed over active decisions
    probs: list[torch.Tensor]  # per decision, the softmax [n, n_choices]; all-zero rows where it was skipped


# Chooses softmax indices [n] for decision i given its log-probabilities [n, n_choices].
Pick = Callable[[int, torch.Tensor], torch.Tensor]


def _draw(generator: torch.Generator) -> Pick:
    return lambda i, log_p: torch.multinomial(log_p.exp(), 1, generator=generator)[:, 0]


class Controller(nn.Module):
    """One LSTM cell shared by all decisions and tasks; per decision a choice embedding table and a softmax head."""

    def __init__(
        self,
        space: SearchSpace,
        task_names: Sequence[str],
        cfg: ControllerConfig = ControllerConfig(),
        descriptors: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """``descriptors`` (one per task) exactly when ``cfg.task_descriptors``."""
        super().__init__()
        if cfg.task_descriptors != (descriptors is not None):
            raise ValueError(
                "strategy.controller.task_descriptors=true needs a descriptor per task, and descriptors need it: "
                f"task_descriptors={cfg.task_descriptors}, descriptors {'given' if descriptors else 'not given'}"
            )
        self.space = space
        self.cfg = cfg
        self.task_embedding = TaskEmbedding(task_names, cfg.task_embedding_size, descriptors=descriptors)
        self.start = nn.Parameter(torch.zeros(cfg.choice_embedding_size))
        self.choice_embeddings = nn.ModuleList(
            nn.Embedding(len(d.choices), cfg.choice_embedding_size) for d in space.decisions
        )
        self.cell = nn.LSTMCell(cfg.choice_embedding_size + cfg.task_embedding_size, cfg.hidden_size)
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden_size, len(d.choices)) for d in space.decisions)
        if cfg.uniform_start:
            for head in self.heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def _unroll(self, tasks: Sequence[str], pick: Pick) -> Rollout:
        """Walk the decisions for ``len(tasks)`` architectures at once, choosing with ``pick``."""
        n = len(tasks)
        task_vectors = self.task_embedding(tasks)
        h = c = torch.zeros(n, self.cfg.hidden_size)
        previous = self.start.expand(n, -1)
        archs: list[dict[str, Any]] = [{} for _ in range(n)]
        log_prob = torch.zeros(n)
        entropy = torch.zeros(n)
        probs = []
        for i, decision in enumerate(self.space.decisions):
            active = torch.tensor([decision.active(a) for a in archs])
            if not active.any():
                probs.append(torch.zeros(n, len(decision.choices)))
                continue
            h_new, c_new = self.cell(torch.cat([previous, task_vectors], dim=1), (h, c))
            logits = self.heads[i](h_new) / self.cfg.temperature
            if self.cfg.tanh_clip is not None:
                logits = self.cfg.tanh_clip * torch.tanh(logits)
            log_p = F.log_softmax(logits, dim=-1)
            index = pick(i, log_p)
            log_prob = log_prob + torch.where(active, log_p.gather(1, index[:, None])[:, 0], 0.0)
            entropy = entropy + torch.where(active, -(log_p.exp() * log_p).sum(-1), 0.0)
            # Inactive rows keep their state: the step never happened for them.
            keep = active[:, None]
            probs.append(torch.where(keep, log_p.exp(), 0.0))
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            previous = torch.where(keep, self.choice_embeddings[i](index), previous)
            for arch, is_active, k in zip(archs, active.tolist(), index.tolist()):
                if is_active:
                    arch[decision.name] = decision.choices[k]
        return Rollout(archs, log_prob, entropy, probs)

    @torch_threads(1)
    def sample(self, task: str, n: int, generator: torch.Generator) -> list[dict[str, Any]]:
        """Draw ``n`` architectures for ``task``; all randomness comes from ``generator``."""
        with torch.no_grad():
            return self._unroll([task] * n, _draw(generator)).archs

    @torch_threads(1)
    def log_prob_and_entropy(
        self, task: str | Sequence[str], archs: Sequence[Mapping[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable log-probability and entropy (summed over active decisions) of ``archs``.

        ``task`` is one task name for all architectures or one name per architecture,
        so a minibatch from the multitask replay bank is scored in one pass.
        """
        tasks = [task] * len(archs) if isinstance(task, str) else list(task)
        if len(tasks) != len(archs):
            raise ValueError(f"got {len(tasks)} task names for {len(archs)} architectures")
        for arch in archs:
            if not self.space.is_valid(arch):
                raise ValueError(f"{dict(arch)} is not an architecture of this search space")
        rollout = self._unroll(tasks, self._follow(archs))
        return rollout.log_prob, rollout.entropy

    @torch_threads(1)
    def log_probs_at(self, task: str, prefixes: Sequence[Mapping[str, Any]], i: int) -> torch.Tensor:
        """``[len(prefixes), n_choices]`` log-probabilities of decision ``i`` after each prefix of decisions ``< i``.

        Re-unrolls the controller along each prefix (the LSTM state at decision ``i``
        depends only on earlier choices); what beam search over architectures needs.
        """
        with torch.no_grad():
            return self._unroll([task] * len(prefixes), self._follow(prefixes)).probs[i].log()

    def _follow(self, archs: Sequence[Mapping[str, Any]]) -> Pick:
        """Pick the choices ``archs`` made (index 0 where a decision is absent: that row is masked anyway)."""
        decisions = self.space.decisions

        def follow(i: int, log_p: torch.Tensor) -> torch.Tensor:
            name = decisions[i].name
            return torch.tensor([decisions[i].index(a[name]) if name in a else 0 for a in archs])

        return follow

    @torch_threads(1)
    def greedy(self, task: str) -> dict[str, Any]:
        """The architecture of greedy decoding: the most likely choice at every step."""
        with torch.no_grad():
            return self._unroll([task], lambda i, log_p: log_p.argmax(dim=-1)).archs[0]

    @torch_threads(1)
    def choice_probabilities(
        self, task: str, n_samples: int = 2000, generator: torch.Generator | None = None
    ) -> dict[str, dict[str, float]]:
        """Probability of each choice of each decision, given that the decision is made.

        Monte-Carlo over ``n_samples`` sampled architectures, averaging the
        controller's softmax at each decision over the samples where it is active
        (lower variance than counting the sampled choices; exact for the first
        decision).  A decision never active in the samples gets all zeros.  Without
        a ``generator`` a fixed seed is used, so the answer depends only on the weights.
        """
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        with torch.no_grad():
            rollout = self._unroll([task] * n_samples, _draw(generator))
        table = {}
        for decision, probs in zip(self.space.decisions, rollout.probs):
            total = probs.sum(dim=0)
            times_active = total.sum().clamp(min=1.0)  # each active row sums to one
            table[decision.name] = {str(c): float(p) for c, p in zip(decision.choices, total / times_active)}
        return table

    # The space signature travels with the weights so a controller is never loaded into a different space.
    def get_extra_state(self) -> Any:
        return {"space_signature": self.space.signature()}

    def set_extra_state(self, state: Any) -> None:
        if state["space_signature"] != self.space.signature():
            raise ValueError(
                f"controller was saved for search space {state['space_signature']} but this one is "
                f"{self.space.signature()}; load it with the same search space config"
            )
