"""Zero-shot proposals: the architectures a pre-trained controller likes best for a task, without searching.

``mode=propose`` decodes the controller's most likely architectures for ``task`` --
greedy decoding, or beam search over the autoregressive decisions -- and prints
them with their probabilities under the policy.  For a task the controller never
saw, the task gets a new embedding per ``transfer.init`` first: with ``mean`` or a
similar task's embedding this is the paper's "what would the controller try first
on a new task".  ``propose.train=true`` then trains each proposal once through the
normal child evaluation and reports its accuracy.  Everything lands in ``proposals.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mnms.artifact import ControllerArtifact, load_controller_artifact
from mnms.child import ChildTrainerConfig
from mnms.controller import Controller
from mnms.evaluator import ChildRunner, TrialRequest
from mnms.run import load_configured_task
from mnms.transfer import TransferConfig, add_new_tasks
from mnms.utils.config import ConfigError, check, from_config, is_int, plain
from mnms.utils.io import RunDir, write_json_atomic
from mnms.utils.threads import torch_threads

METHODS = ("beam", "greedy")
PROPOSALS_FILE = RunDir.PROPOSALS


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
            raise ConfigError(f"propose.method=greedy decodes one architecture, but propose.k={self.k}; "
                              "set propose.k=1 or use propose.method=beam for the top k")


@dataclass(frozen=True)
class Ranked:
    """One decoded architecture (active decisions only) and its log-probability under the controller."""

    arch: dict[str, Any]
    log_prob: float

    @property
    def probability(self) -> float:
        return math.exp(self.log_prob)


def _log_probs_at(controller: Controller, task: str, prefixes: list[dict[str, Any]], i: int) -> torch.Tensor:
    """``[len(prefixes), n_choices]`` log-probabilities of decision ``i`` after each prefix of decisions ``< i``.

    Re-unrolls the controller along each prefix (the LSTM state at decision ``i``
    depends only on earlier choices); quadratic in the number of decisions, which
    is a few dozen tiny LSTM steps.
    """
    decisions = controller.space.decisions

    def follow(j: int, log_p: torch.Tensor) -> torch.Tensor:
        name = decisions[j].name
        return torch.tensor([decisions[j].index(p[name]) if name in p else 0 for p in prefixes])

    with torch.no_grad():
        rollout = controller._unroll([task] * len(prefixes), follow)  # noqa: SLF001 - the controller's own decoder
    return rollout.probs[i].log()


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
        log_probs = _log_probs_at(controller, task, [beam.arch for beam in beams], i)
        grown = []
        for beam, row in zip(beams, log_probs.tolist()):
            if not decision.active(beam.arch):
                grown.append(beam)
                continue
            grown += [Ranked({**beam.arch, decision.name: choice}, beam.log_prob + lp)
                      for choice, lp in zip(decision.choices, row)]
        beams = sorted(grown, key=lambda r: -r.log_prob)[:width]  # stable: ties keep choice order
    return beams


def controller_for_task(artifact: ControllerArtifact, task: str, init: str, seed: int) -> tuple[Controller, str]:
    """The artifact's controller, with an embedding for ``task`` (pre-trained, or new per ``init``)."""
    controller = artifact.build_controller()
    added = add_new_tasks(controller, [task], init, seed)
    return controller, f"new, transfer.init={init}" if added else "pre-trained"


def propose(cfg: DictConfig, run_dir: Path) -> float | None:
    """``mode=propose``: print and save the top proposals for ``task``; with ``propose.train`` their accuracy.

    Returns the best validation accuracy of the trained proposals (None when nothing was trained).
    """
    transfer = TransferConfig.from_mapping(plain(cfg.transfer))
    if transfer.source is None:
        raise ValueError("mode=propose needs transfer.from=<controller.pt or a search run dir holding one>")
    options = from_config(ProposeConfig, cfg.propose)
    artifact = load_controller_artifact(transfer.source)
    controller, embedding = controller_for_task(artifact, cfg.task, transfer.init, cfg.seed)
    ranked = beam_search(controller, cfg.task, 1 if options.method == "greedy" else options.k)
    rows = [{"rank": rank, "decisions": r.arch, "probability": r.probability, "log_prob": r.log_prob}
            for rank, r in enumerate(ranked, start=1)]
    if options.train:
        task = load_configured_task(cfg, cfg.task)
        runner = ChildRunner({task.name: task}, from_config(ChildTrainerConfig, cfg.trainer), cfg.paths.cache_dir,
                             plain(cfg.encoders))
        for row in rows:
            arch = {**plain(cfg.child.arch), **row["decisions"]}  # the search fills unsearched fields the same way
            outcome = runner(TrialRequest(row["rank"], task.name, arch, cfg.seed))
            row.update(arch=arch, status=outcome.status, metrics=outcome.metrics, error=outcome.error)
    payload = {"task": cfg.task, "embedding": embedding, "controller": str(artifact.path),
               "pre_trained_tasks": artifact.task_names, "method": options.method, "k": options.k,
               "seed": cfg.seed, "proposals": rows}
    write_json_atomic(RunDir(run_dir).proposals, payload)
    _print_proposals(payload, run_dir)
    accuracies = [row["metrics"]["val_accuracy"] for row in rows if row.get("status") == "ok"]
    return max(accuracies) if accuracies else None


def _print_proposals(payload: dict[str, Any], run_dir: Path) -> None:
    trained = any("status" in row for row in payload["proposals"])
    table = Table(title=f"{payload['method']} proposals for {payload['task']} (task embedding: {payload['embedding']})")
    for column in ("rank", "probability", "decisions") + (("val acc", "test acc") if trained else ()):
        table.add_column(column, justify="left" if column == "decisions" else "right")
    for row in payload["proposals"]:
        cells = [str(row["rank"]), f"{row['probability']:.4f}", ", ".join(f"{k}={v}" for k, v in row["decisions"].items())]
        if trained and row["status"] == "ok":
            cells += [f"{row['metrics'][key]:.4f}" for key in ("val_accuracy", "test_accuracy")]
        elif trained:
            cells += [row["status"], row["error"] or ""]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"controller: {payload['controller']}  proposals: {run_dir / PROPOSALS_FILE}")
