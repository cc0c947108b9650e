"""The budget every child trains with (Hydra group ``trainer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnms.utils.config import check, is_int, is_number


@dataclass(frozen=True)
class ChildTrainerConfig:
    """The training budget and Trainer switches of a child."""

    section: ClassVar[str] = "trainer"

    max_epochs: int = 5
    max_steps: int = -1  # -1: epochs decide; otherwise stop after this many optimiser steps
    time_limit_s: float | None = None  # a child still training after this is a failed trial
    progress_bar: bool = False  # Lightning's per-child bar
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
