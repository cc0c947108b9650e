"""How a search spends its budget (Hydra group ``search``), and which of it a resume must share."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mnms.search.cost import CostConfig
from mnms.search.pruning import PRUNERS, Pruner
from mnms.utils.config import check, free, is_int, resume_settings

log = logging.getLogger(__name__)

SCHEDULES = ("round_robin", "uniform")
REWARDS = ("val_accuracy", "val_macro_f1")
PRUNED_REWARDS = ("best_so_far", "failure")
MODES = ("sync", "async")
REPEATS = ("redraw", "reuse")

_PRUNING = "only_with_a_pruner"  # field metadata: the setting means nothing with search.pruner=none


def _pruning(default: Any) -> Any:
    return field(default=default, metadata={_PRUNING: True})


@dataclass(frozen=True)
class SearchConfig:
    """How a search spends its budget (Hydra group ``search``).

    Every field a resumed search may change is declared ``free`` with the reason; all
    others are part of the resume contract (``resume_settings``).
    """

    section: ClassVar[str] = "search"

    trials: int = free(400, "a resume goes on or extends the search: the trials already run stay as they are")
    # Examples per split the children see (stratified, seeded); None = the whole task.
    # A cap makes a cheap proxy search (e.g. 2000), at the cost of rewards that rank
    # architectures as they do on small data.
    max_examples: int | None = free(
        None, "its effect, each task's split sizes, is in the signature (examples): a cap that changes them is refused"
    )
    batch_size: int = 8  # children per controller step
    task_schedule: str = "round_robin"
    reward: str = "val_accuracy"
    reuse_rewards: bool = True  # an identical (task, architecture, seed) reuses its recorded result
    # A proposal that repeats an architecture its task already tried (or its step already holds):
    # redraw: drawn again, so a trial is always a child that trains, at most max_draws draws per
    #   slot of the step; a step that finds nothing new takes the repeats as reused results, and
    #   the search warns that the task's policy has settled (docs/search.md, "What a trial counts");
    # reuse: shares the earlier result and uses a trial (the paper's loop; every search before mnms 0.6).
    repeats: str = "redraw"
    max_draws: int = 10
    failure_reward: float = 0.0  # reward of a child that raised, diverged or overran
    progress: bool = free(True, "a progress bar")
    # Stopping bad children early (mnms/search/pruning.py): none | median | asha.
    pruner: str = "none"
    pruner_startup_trials: int = _pruning(5)  # trials of a task that must give a value before pruning it
    pruner_warmup_epochs: int = _pruning(1)  # median: the first epoch a child can be stopped after
    pruner_min_epochs: int = _pruning(1)  # asha: the first rung
    pruner_reduction_factor: int = _pruning(3)  # asha: the top 1/factor of a rung goes on
    # A pruned child's reward: its best validation score so far (best_so_far), or
    # failure_reward (failure). See docs/pruning.md for why the default is best_so_far.
    pruned_reward: str = _pruning("best_so_far")
    # sync: each controller step trains its whole batch, then learns (exactly reproducible).
    # async: a free worker gets a new child at once; the strategy learns from each batch_size
    # trials of a task as they finish (no trial lost or repeated after a crash; order may vary).
    mode: str = "sync"
    # Cost in the reward (mnms/search/cost.py): search.cost.shape=none (the paper) | mnas | abs.
    cost: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        check(self, "trials", is_int(self.trials) and self.trials >= 1, "an integer >= 1")
        check(self, "batch_size", is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1")
        check(
            self,
            "max_examples",
            self.max_examples is None or (is_int(self.max_examples) and self.max_examples >= 2),
            "null (all examples) or an integer >= 2",
        )
        check(self, "task_schedule", self.task_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        check(self, "reward", self.reward in REWARDS, f"one of {list(REWARDS)}")
        check(self, "mode", self.mode in MODES, f"one of {list(MODES)}")
        check(self, "repeats", self.repeats in REPEATS, f"one of {list(REPEATS)}")
        check(self, "max_draws", is_int(self.max_draws) and self.max_draws >= 1, "an integer >= 1")
        check(self, "pruner", self.pruner in PRUNERS, f"one of {list(PRUNERS)}")
        check(self, "pruned_reward", self.pruned_reward in PRUNED_REWARDS, f"one of {list(PRUNED_REWARDS)}")
        for name in ("pruner_startup_trials", "pruner_warmup_epochs", "pruner_min_epochs"):
            check(self, name, is_int(getattr(self, name)) and getattr(self, name) >= 1, "an integer >= 1")
        check(
            self,
            "pruner_reduction_factor",
            is_int(self.pruner_reduction_factor) and self.pruner_reduction_factor >= 2,
            "an integer >= 2 (asha keeps the top 1/factor at each rung)",
        )

    @property
    def pruning(self) -> Pruner:
        return Pruner(
            self.pruner,
            startup_trials=self.pruner_startup_trials,
            warmup_epochs=self.pruner_warmup_epochs,
            min_epochs=self.pruner_min_epochs,
            reduction_factor=self.pruner_reduction_factor,
        )

    def resume_settings(self) -> dict[str, Any]:
        """What a resumed search must share: every field not ``free``, and a pruner's own only when it is on."""
        settings = resume_settings(self)
        if self.pruner == "none":
            for item in dataclasses.fields(self):
                if item.metadata.get(_PRUNING):
                    del settings[item.name]
        if self.repeats == "reuse":
            del settings["max_draws"]  # nothing is drawn again
        return settings

    def warn_if_tasks_go_unsearched(self, tasks: Sequence[str]) -> None:
        """Warn when round-robin steps run out before every task had its turn."""
        steps = -(-self.trials // self.batch_size)
        if self.task_schedule == "round_robin" and steps < len(tasks):
            log.warning(
                "search.trials=%d in steps of search.batch_size=%d reaches %d of the %d tasks: %s get no trial; "
                "give search.trials >= %d",
                self.trials,
                self.batch_size,
                steps,
                len(tasks),
                ", ".join(tasks[steps:]),
                self.batch_size * len(tasks),
            )
