"""What one trained child scored and cost, and the two ways its training can be cut short."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Why a child's training ended (ChildResult.stopped_by); what each means to the search is
# mnms.executors.trial's (a pruned status, a result that is not reusable).
MAX_EPOCHS, MAX_STEPS, EARLY_STOPPING, PRUNED, TIME_LIMIT = (
    "max_epochs",
    "max_steps",
    "early_stopping",
    "pruned",
    "time_limit",
)


@dataclass(frozen=True)
class ChildResult:
    """What one trained child scored, plus what it cost."""

    val_accuracy: float
    val_macro_f1: float
    test_accuracy: float
    test_macro_f1: float
    num_parameters: int
    train_seconds: float
    total_seconds: float
    steps: int
    features_from_cache: bool
    epochs: int = 0  # epochs trained (early stopping may end a child before trainer.max_epochs)
    best_epoch: int = 0  # the epoch (1-based) whose weights gave the reward and the test scores
    # Validation accuracy after each epoch (and of the final weights when training ended mid-epoch).
    val_curve: list[float] = field(default_factory=list)
    # Why training ended: max_epochs, max_steps, early_stopping (trainer.patience), pruned
    # (below the search pruner's bar) or time_limit (trainer.time_limit_s, after at least
    # one validated epoch: the child is scored on its best epoch so far).
    stopped_by: str = MAX_EPOCHS
    device: str = "cpu"  # where it trained: cpu, or cuda (the GPU its worker was given)
    # Its compute, counted rather than timed, so the same on every machine (mnms.child.flops):
    # one forward pass per example, and what training and validation computed in all.
    # 0 in records from before mnms 0.7, which did not count them.
    flops_per_example: float = 0.0
    flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChildTimeout(RuntimeError):
    """A child overran ``trainer.time_limit_s``."""


class ChildDiverged(RuntimeError):
    """A child's training loss became NaN or infinite."""
