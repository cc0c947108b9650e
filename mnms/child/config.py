"""The budget every child trains with (Hydra group ``trainer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from mnms.utils.config import ConfigError, check, free, is_int, is_number

ACCELERATORS = ("auto", "cpu", "gpu")
EPOCH_SELECTIONS = ("best", "last")
PRECISIONS = ("32-true", "bf16-mixed")


@dataclass(frozen=True)
class ChildTrainerConfig:
    """The training budget and Trainer switches of a child.

    A child is validated after every epoch and stops once validation accuracy has not
    improved for ``patience`` epochs; its reward is the best epoch's validation score and
    its test score comes from that same epoch's weights. ``patience=null
    epoch_selection=last`` is how children trained before mnms 0.3: every epoch, scored
    once at the end (what a run dir of those versions needs to resume exactly).
    """

    section: ClassVar[str] = "trainer"

    max_epochs: int = 10
    patience: int | None = 2  # epochs without a better validation accuracy before stopping; null = never stop early
    epoch_selection: str = "best"  # whose weights give the reward and the test scores: the best epoch's, or the last
    max_steps: int = -1  # -1: epochs decide; otherwise stop after this many optimiser steps
    # auto (a GPU when one is visible), cpu or gpu: the Trainer's and the encoders'.
    accelerator: str = free(
        "auto",
        "a deliberate exception: a GPU changes the numerics, not the method, so a search may resume on another machine",
    )
    # 32-true, or bf16-mixed: matmuls in bfloat16 under autocast, weights and optimiser in float32
    # (Lightning's mixed precision; on a GPU with bfloat16 support, and on the CPU).
    precision: str = free("32-true", "like the accelerator, it changes the numerics, not the method")

    # A child still training after this stops after its current batch and is scored on its best
    # validated epoch (stopped_by: time_limit); one not yet validated is a timeout.
    time_limit_s: float | None = None
    progress_bar: bool = free(False, "Lightning's per-child progress bar")
    deterministic: bool = False  # deterministic kernels (much slower bag backward); CPU runs repeat without it
    # Intra-op torch threads a child trains with. The count changes results (another
    # reduction order in matmuls), so it is part of the child's config rather than taken
    # from the process: a seeded search then records the same trials under every executor
    # and worker count, and `mode=child` trains exactly the child a search trained.
    threads: int = 1

    def __post_init__(self) -> None:
        check(self, "threads", is_int(self.threads) and self.threads >= 1, "an integer >= 1")
        check(self, "max_epochs", is_int(self.max_epochs) and self.max_epochs >= 1, "an integer >= 1")
        check(
            self,
            "patience",
            self.patience is None or (is_int(self.patience) and self.patience >= 1),
            "an integer >= 1, or null to train every epoch",
        )
        check(self, "accelerator", self.accelerator in ACCELERATORS, f"one of {list(ACCELERATORS)}")
        check(self, "epoch_selection", self.epoch_selection in EPOCH_SELECTIONS, f"one of {list(EPOCH_SELECTIONS)}")
        check(self, "precision", self.precision in PRECISIONS, f"one of {list(PRECISIONS)}")
        check(
            self,
            "max_steps",
            is_int(self.max_steps) and (self.max_steps == -1 or self.max_steps >= 1),
            "-1 (the epochs decide) or an integer >= 1",
        )
        check(
            self,
            "time_limit_s",
            self.time_limit_s is None or (is_number(self.time_limit_s) and self.time_limit_s > 0),
            "a number of seconds > 0, or null for no limit",
        )


def validates_every_epoch(cfg: ChildTrainerConfig) -> bool:
    """Whether a child needs a validation pass after each epoch (to stop early or to pick its best)."""
    return cfg.patience is not None or cfg.epoch_selection == "best"


def resolve_device(accelerator: str) -> str:
    """The torch device ``trainer.accelerator`` means on this machine (``cuda`` or ``cpu``).

    ``gpu`` without a visible CUDA device is an error here, before any child trains,
    rather than Lightning's deep inside the first fit.
    """
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but torch sees no CUDA device; use trainer.accelerator=auto or cpu")
    return "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
