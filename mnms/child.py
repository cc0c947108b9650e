"""Train and evaluate one child: encode the task, build the classifier, fit with Lightning.

``evaluate_child`` is the single place a child is trained, whether from ``mode=child``
or inside a search, so a reward always means the same thing.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping

import pytorch_lightning as pl
import torch

from lightning_modules import ChildClassifier, TaskDataModule
from mnms.arch import Architecture
from mnms.encoders import get_encoder
from mnms.feature_cache import FeatureCache
from mnms.tasks import SPLITS, Task
from mnms.utils.config import check, is_int, is_number
from mnms.utils.threads import torch_threads


@dataclass(frozen=True)
class ChildTrainerConfig:
    """The training budget and Trainer switches of a child (Hydra group ``trainer``)."""

    section: ClassVar[str] = "trainer"

    max_epochs: int = 5
    max_steps: int = -1  # -1: epochs decide; otherwise stop after this many optimiser steps
    time_limit_s: float | None = None  # a child still training after this is a failed trial
    progress_bar: bool = False
    deterministic: bool = False
    # Intra-op torch threads a child trains with. The count changes results (another
    # reduction order in matmuls), so it is part of the child's config rather than taken
    # from the process: a seeded search then records the same trials under every executor
    # and worker count, and `mode=child` trains exactly the child a search trained.
    threads: int = 1

    def __post_init__(self) -> None:
        check(self, "threads", is_int(self.threads) and self.threads >= 1, "an integer >= 1")
        check(self, "max_epochs", is_int(self.max_epochs) and self.max_epochs >= 1, "an integer >= 1")
        check(self, "max_steps", is_int(self.max_steps) and (self.max_steps == -1 or self.max_steps >= 1),
              "-1 (the epochs decide) or an integer >= 1")
        check(self, "time_limit_s", self.time_limit_s is None or (is_number(self.time_limit_s) and self.time_limit_s > 0),
              "a number of seconds > 0, or null for no limit")


class ChildTimeout(RuntimeError):
    """A child overran ``trainer.time_limit_s``."""


class ChildDiverged(RuntimeError):
    """A child's training loss became NaN or infinite."""


class _Watchdog(pl.Callback):
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet_lightning() -> None:
    # Children are trained hundreds of times: Lightning's per-fit banners drown the search.
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
        callbacks=[_Watchdog(trainer_cfg.time_limit_s)],
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


def _evaluate_child(task: Task, arch: Architecture, trainer_cfg: ChildTrainerConfig, cache: FeatureCache, seed: int,
                    encoder_options: Mapping[str, Mapping[str, Any]] | None) -> ChildResult:
    started = time.perf_counter()
    _quiet_lightning()
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
