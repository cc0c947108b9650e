"""Train and score one child with a Lightning Trainer: encode the task, build the classifier, fit.

``evaluate_child`` is the single place a child is trained, whether from ``mode=child``
or inside a search, so a reward always means the same thing.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerFn

from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import TaskDataModule
from mnms.child import result as stopped
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig, resolve_device, validates_every_epoch
from mnms.child.flops import child_flops, examples_trained, forward_flops_per_example
from mnms.child.inputs import ChildInputs, child_inputs
from mnms.child.result import ChildDiverged, ChildResult, ChildTimeout
from mnms.child.stopping import stops_after
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import SPLITS, Task
from mnms.utils.threads import torch_threads


class Watchdog(pl.Callback):
    """Stops a child that overruns its time budget or diverges, so the search can move on.

    A child over its time budget that has a validated epoch stops there and is scored on
    its best epoch so far, like one stopped early; one with none is a timeout.
    """

    def __init__(self, time_limit_s: float | None, best: BestEpoch) -> None:
        self.time_limit_s = time_limit_s
        self.best = best
        self.started = time.perf_counter()
        self.overran = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if not math.isfinite(float(loss)):
            raise ChildDiverged(f"training loss became {float(loss)} at step {trainer.global_step}")
        elapsed = time.perf_counter() - self.started
        if self.time_limit_s is None or elapsed <= self.time_limit_s:
            return
        if self.best.state is None:
            raise ChildTimeout(
                f"still training after {elapsed:.1f}s > trainer.time_limit_s={self.time_limit_s}, "
                "before its first validation"
            )
        self.overran = trainer.should_stop = True


class PruneBelow(pl.Callback):
    """Stops a child whose best validation accuracy so far is below the search pruner's bar for the epoch.

    ``bars`` maps an epoch (1-based) to that bar (``mnms.search.pruning``); the rule is
    ``mnms.child.stopping.stops_after``. An epoch after which the child stops anyway is not
    pruned: out of time part-way through the epoch, or converged (early stopping decides
    after this hook, so ``_stopped_by`` ranks it first).
    """

    def __init__(self, bars: Mapping[int, float]) -> None:
        self.bars = {int(epoch): bar for epoch, bar in bars.items()}
        self.best = float("-inf")
        self.pruned_at = 0  # the epoch the child was stopped after; 0 when it was not

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        epoch = trainer.current_epoch + 1
        self.best = max(self.best, float(trainer.callback_metrics[BestEpoch.monitor]))
        if trainer.should_stop:  # out of time part-way through this epoch: it was not pruned
            return
        if stops_after(self.bars, epoch, self.best, trainer.max_epochs):
            self.pruned_at, trainer.should_stop = epoch, True


class BestEpoch(pl.Callback):
    """Keeps the weights and validation scores of the epoch with the best validation accuracy
    (or, with ``keep="last"``, of the latest validation).

    A copy in memory rather than a checkpoint file: children are small and trained by the
    hundred, and the weights are needed only until the child is tested.
    """

    monitor = "val/accuracy"

    def __init__(self, keep: str = "best") -> None:
        self.keep = keep
        self.score = float("-inf")
        self.epoch = 0
        self.metrics: dict[str, float] = {}
        self.state: dict[str, torch.Tensor] | None = None
        self.step = -1  # the optimiser step of the latest validation
        self.curve: list[float] = []  # every validation's accuracy, in order

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.step = trainer.global_step
        score = float(trainer.callback_metrics[self.monitor])
        self.curve.append(score)
        if score > self.score or self.keep == "last":
            # During fit the epoch being validated has not been counted yet; afterwards it has.
            self.score, self.epoch = score, trainer.current_epoch + (1 if trainer.state.fn == TrainerFn.FITTING else 0)
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners: children are trained hundreds of times and would drown the search."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")


def build_trainer(trainer_cfg: ChildTrainerConfig, *callbacks: pl.Callback) -> pl.Trainer:
    """A Trainer that validates every epoch, stops early, and has no loggers or checkpoint files.

    Everything else Lightning would do per step is overhead for a seconds-long child.
    """
    stopping = []
    if trainer_cfg.patience is not None:
        stopping = [EarlyStopping(BestEpoch.monitor, mode="max", patience=trainer_cfg.patience, verbose=False)]
    return pl.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=1,
        precision=trainer_cfg.precision,
        max_epochs=trainer_cfg.max_epochs,
        max_steps=trainer_cfg.max_steps,
        limit_val_batches=1.0 if validates_every_epoch(trainer_cfg) else 0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        deterministic=trainer_cfg.deterministic,
        callbacks=[*stopping, *callbacks],
    )


def build_classifier(arch: Architecture, inputs: ChildInputs, num_classes: int) -> ChildClassifier:
    """A fresh classifier for ``inputs``: its input layer drawn now, from torch's global RNG."""
    deep = inputs.deep
    return ChildClassifier(
        arch, deep.make_input_layer(), deep.dim, num_classes, token_level=deep.token_level, wide_rows=inputs.wide_rows
    )


def evaluate_child(
    task: Task,
    arch: Architecture,
    trainer_cfg: ChildTrainerConfig,
    cache: FeatureCache,
    *,
    seed: int,
    encoder_options: Mapping[str, Mapping[str, Any]] | None = None,
    prune_below: Mapping[int, float] | None = None,
    checkpoint: Path | None = None,
) -> ChildResult:
    """Train ``arch`` on ``task``'s train split and score it on validation and test.

    ``prune_below`` holds a search pruner's bars (``PruneBelow``). ``checkpoint``: where
    to write a Lightning checkpoint (weights only) of the weights the child is scored
    with, its best epoch's (``mode=child`` saves the model; a search keeps none).
    Everything, encoding included, runs with ``trainer_cfg.threads`` intra-op threads;
    the caller's setting is restored afterwards.
    """
    with torch_threads(trainer_cfg.threads):
        return _evaluate_child(task, arch, trainer_cfg, cache, seed, encoder_options, prune_below or {}, checkpoint)


def _stopped_by(trainer: pl.Trainer, watchdog: Watchdog, pruner: PruneBelow) -> str:
    """Why ``trainer`` stopped (``ChildResult.stopped_by``).

    Out of time comes first: its last epoch was part-trained, and early stopping may have
    judged that part. A child that converged at the epoch a bar stopped it is early-stopped,
    not pruned: it would have stopped there anyway, and its curve is complete.
    """
    if watchdog.overran:
        return stopped.TIME_LIMIT
    if trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch:
        return stopped.EARLY_STOPPING
    if pruner.pruned_at:
        return stopped.PRUNED
    return stopped.MAX_STEPS if trainer.global_step == trainer.max_steps else stopped.MAX_EPOCHS


def _evaluate_child(
    task: Task,
    arch: Architecture,
    trainer_cfg: ChildTrainerConfig,
    cache: FeatureCache,
    seed: int,
    encoder_options: Mapping[str, Mapping[str, Any]] | None,
    prune_below: Mapping[int, float],
    checkpoint: Path | None,
) -> ChildResult:
    started = time.perf_counter()
    quiet_lightning()
    device = resolve_device(trainer_cfg.accelerator)
    inputs = child_inputs(task, arch, cache, encoder_options, device)
    pl.seed_everything(seed, workers=False, verbose=False)
    model = build_classifier(arch, inputs, task.num_classes)
    labels = {split: torch.tensor(task.splits[split].labels, dtype=torch.long) for split in SPLITS}
    data = TaskDataModule(inputs.splits, labels, arch.batch_size, seed)
    best = BestEpoch(trainer_cfg.epoch_selection)
    watchdog, pruner = Watchdog(trainer_cfg.time_limit_s, best), PruneBelow(prune_below)
    trainer = build_trainer(trainer_cfg, watchdog, pruner, best)
    fit_started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_seconds = time.perf_counter() - fit_started
    stopped_by = _stopped_by(trainer, watchdog, pruner)
    if best.step != trainer.global_step:
        # The final weights were never validated (no validation per epoch, or max_steps
        # ended an epoch early): score them too.
        trainer.limit_val_batches = 1.0
        trainer.validate(model, datamodule=data, verbose=False)
    model.load_state_dict(best.state)
    (test,) = trainer.test(model, datamodule=data, verbose=False)
    if checkpoint is not None:
        trainer.save_checkpoint(checkpoint, weights_only=True)
    per_example = forward_flops_per_example(model, inputs.splits["train"])
    train_batches = data.train_dataloader()
    trained = examples_trained(trainer.global_step, train_batches.size, arch.batch_size, len(train_batches))
    validated = len(best.curve) * len(labels["validation"])
    return ChildResult(
        val_accuracy=best.metrics["val/accuracy"],
        val_macro_f1=best.metrics["val/macro_f1"],
        test_accuracy=float(test["test/accuracy"]),
        test_macro_f1=float(test["test/macro_f1"]),
        num_parameters=model.num_parameters,
        train_seconds=train_seconds,
        total_seconds=time.perf_counter() - started,
        steps=trainer.global_step,
        features_from_cache=inputs.from_cache,
        epochs=trainer.current_epoch,
        best_epoch=best.epoch,
        val_curve=best.curve,
        stopped_by=stopped_by,
        device=device,
        flops_per_example=per_example,
        flops=child_flops(per_example, trained, validated),
    )
