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
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import TaskDataModule
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.result import ChildDiverged, ChildResult, ChildTimeout
from mnms.data.encoders import get_encoder
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import SPLITS, Task
from mnms.utils.threads import torch_threads


class Watchdog(pl.Callback):
    """Stops a child that overruns its time budget or diverges, so the search can move on."""

    def __init__(self, time_limit_s: float | None) -> None:
        self.time_limit_s = time_limit_s
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if not math.isfinite(float(loss)):
            raise ChildDiverged(f"training loss became {float(loss)} at step {trainer.global_step}")
        elapsed = time.perf_counter() - self.started
        if self.time_limit_s is not None and elapsed > self.time_limit_s:
            raise ChildTimeout(f"still training after {elapsed:.1f}s > trainer.time_limit_s={self.time_limit_s}")


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners: children are trained hundreds of times and would drown the search."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")


def build_trainer(trainer_cfg: ChildTrainerConfig) -> pl.Trainer:
    """A CPU Trainer that fits without per-epoch validation, loggers or checkpoints.

    The reward is the final model's validation score, measured once after ``fit``;
    everything else Lightning would do per step is overhead for a seconds-long child.
    """
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=trainer_cfg.max_epochs,
        max_steps=trainer_cfg.max_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        deterministic=trainer_cfg.deterministic,
        callbacks=[Watchdog(trainer_cfg.time_limit_s)],
    )


def evaluate_child(
    task: Task,
    arch: Architecture,
    trainer_cfg: ChildTrainerConfig,
    cache: FeatureCache,
    *,
    seed: int,
    encoder_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> ChildResult:
    """Train ``arch`` on ``task``'s train split and score it on validation and test.

    Everything, encoding included, runs with ``trainer_cfg.threads`` intra-op threads;
    the caller's setting is restored afterwards.
    """
    with torch_threads(trainer_cfg.threads):
        return _evaluate_child(task, arch, trainer_cfg, cache, seed, encoder_options)


def _evaluate_child(
    task: Task,
    arch: Architecture,
    trainer_cfg: ChildTrainerConfig,
    cache: FeatureCache,
    seed: int,
    encoder_options: Mapping[str, Mapping[str, Any]] | None,
) -> ChildResult:
    started = time.perf_counter()
    quiet_lightning()
    encoded = get_encoder(arch.encoder, encoder_options).encode(
        task, fine_tune=arch.fine_tune, pooling=arch.pooling, cache=cache
    )
    pl.seed_everything(seed, workers=False, verbose=False)
    model = ChildClassifier(arch, encoded.make_input_layer(), encoded.dim, task.num_classes)
    labels = {split: torch.tensor(task.splits[split].labels, dtype=torch.long) for split in SPLITS}
    data = TaskDataModule(encoded.splits, labels, arch.batch_size, seed)
    trainer = build_trainer(trainer_cfg)
    fit_started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_seconds = time.perf_counter() - fit_started
    trainer.limit_val_batches = 1.0
    (val,) = trainer.validate(model, datamodule=data, verbose=False)
    (test,) = trainer.test(model, datamodule=data, verbose=False)
    return ChildResult(
        val_accuracy=float(val["val/accuracy"]),
        val_macro_f1=float(val["val/macro_f1"]),
        test_accuracy=float(test["test/accuracy"]),
        test_macro_f1=float(test["test/macro_f1"]),
        num_parameters=model.num_parameters,
        train_seconds=train_seconds,
        total_seconds=time.perf_counter() - started,
        steps=trainer.global_step,
        features_from_cache=encoded.from_cache,
    )
