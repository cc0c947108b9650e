"""Zero-shot proposals: the architectures a pre-trained controller likes best for a task, without searching.

``beam_search`` decodes the controller's most likely architectures for a task --
greedy decoding is a beam of width one -- with their probabilities under the policy.
For a task the controller never saw, ``controller_for_task`` first gives it a new
embedding per ``transfer.init``: with ``mean`` or a similar task's embedding this is
the paper's "what would the controller try first on a new task". ``mode=propose``
(``mnms.app.propose``) prints, saves and optionally trains them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnms.search.controller import Controller
from mnms.transfer.artifact import ControllerArtifact
from mnms.transfer.warm_start import Describe, add_new_tasks, check_descriptors
from mnms.utils.config import ConfigError, check, is_int
from mnms.utils.threads import torch_threads

METHODS = ("beam", "greedy")


@dataclass(frozen=True)
class ProposeConfig:
    """The ``propose:`` config section: how many architectures, how they are decoded, whether to train them."""

    section: ClassVar[str] = "propose"

    k: int = 5
    method: str = "beam"  # beam: beam search of width k | greedy: the single most likely choice at every step
    train: bool = False

    def __post_init__(self) -> None:
        check(self, "k", is_int(self.k) and self.k >= 1, "a positive integer")
        check(self, "method", self.method in METHODS, f"one of {list(METHODS)}")
        if self.method == "greedy" and self.k != 1:
            raise ConfigError(
                f"propose.method=greedy decodes one architecture, but propose.k={self.k}; "
                "set propose.k=1 or use propose.method=beam for the top k"
            )


@dataclass(frozen=True)
class Ranked:
    """One decoded architecture (active decisions only) and its log-probability under the controller."""

    arch: dict[str, Any]
    log_prob: float

    @property
    def probability(self) -> float:
        return math.exp(self.log_prob)


@torch_threads(1)
def beam_search(controller: Controller, task: str, width: int) -> list[Ranked]:
    """The ``width`` most likely architectures found by beam search, most likely first (width 1 = greedy).

    Inactive decisions are skipped without branching, exactly as the controller
    skips them, so every result is a valid architecture and its log-probability is
    the controller's own ``log_prob_and_entropy`` of it.
    """
    beams = [Ranked({}, 0.0)]
    for i, decision in enumerate(controller.space.decisions):
        if not any(decision.active(beam.arch) for beam in beams):
            continue
        log_probs = controller.log_probs_at(task, [beam.arch for beam in beams], i)
        grown = []
        for beam, row in zip(beams, log_probs.tolist()):
            if not decision.active(beam.arch):
                grown.append(beam)
                continue
            grown += [
                Ranked({**beam.arch, decision.name: choice}, beam.log_prob + lp)
                for choice, lp in zip(decision.choices, row)
            ]
        beams = sorted(grown, key=lambda r: -r.log_prob)[:width]  # stable: ties keep choice order
    return beams


def controller_for_task(
    artifact: ControllerArtifact, task: str, init: str, seed: int, describe: Describe | None = None
) -> tuple[Controller, str]:
    """The artifact's controller, with an embedding for ``task`` (pre-trained, or new per ``init``;
    ``descriptor`` projects ``describe(task)``)."""
    check_descriptors(artifact, init)
    controller = artifact.build_controller()
    added = add_new_tasks(controller, [task], init, seed, describe)
    return controller, f"new, transfer.init={init}" if added else "pre-trained"
