"""``mode=child``: train one architecture on ``task``, print and save what it scored, and save the model.

The architecture is ``child.arch``, or, with ``child.from=<search run dir>``, the one that
search found best for ``task`` (``child.select.rank=k``: its k-th best distinct one), with any
``child.arch.*`` given on the command line overriding the run's value. The trained child
is saved as a model folder (``<run dir>/model``, ``mnms.model.folder``) and logged to
W&B as an artifact of type ``model``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lightning_modules.trainer import evaluate_child
from mnms.app.common import (
    child_arch,
    child_trainer,
    command_line_keys,
    encoder_options,
    load_configured_task,
    logged_config,
    task_provenance,
    tracking_config,
)
from mnms.child.arch import Architecture
from mnms.child.flops import gflops
from mnms.child.inputs import vocabularies
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task
from mnms.model.folder import CHECKPOINT, staging_folder, write_model
from mnms.search.selection import ChildSourceConfig
from mnms.tracking import Tracker
from mnms.utils.config import from_config
from mnms.utils.io import RunDir, RunDirError, write_json_atomic

ARCH_PREFIX = "child.arch."


def run_child(cfg: DictConfig, run_dir: Path) -> float:
    """Train the child once; writes ``result.json`` and the model folder, returns its validation accuracy."""
    files = RunDir(run_dir)
    if files.result.exists() or files.model.exists():
        raise RunDirError(
            f"{run_dir} already holds a trained child ({files.RESULT if files.result.exists() else files.MODEL}): "
            "mode=child never replaces one; give this run a new run dir (drop hydra.run.dir, or name another)"
        )
    trainer_cfg = child_trainer(cfg)  # conf/mode/child.yaml turns its progress bar on
    settings = ChildSourceConfig.from_mapping(cfg.child)
    arch, source = child_architecture(cfg, settings)
    task = load_configured_task(cfg, cfg.task)
    cache = FeatureCache(cfg.paths.cache_dir)
    options = encoder_options(cfg)
    tracking = tracking_config(cfg, run_dir, group=task.name, job_type="child", name=f"child-{cfg.seed}")
    staging = staging_folder(files.model) if settings.save else None
    with Tracker(tracking, logged_config(cfg, tracking)) as tracker, _removed_afterwards(staging):
        result = evaluate_child(
            task,
            arch,
            trainer_cfg,
            cache,
            seed=cfg.seed,
            encoder_options=options,
            checkpoint=staging / CHECKPOINT if staging else None,
        )
        model = None
        if staging is not None:
            provenance = {"task": task_provenance(cfg, cfg.task), "source": source}
            vocabs = vocabularies(task, arch, cache, options)
            model = write_model(
                staging,
                files.model,
                task=task,
                arch=arch,
                trainer=trainer_cfg,
                seed=cfg.seed,
                result=result,
                vocabs=vocabs,
                encoder_options=options,
                provenance=provenance,
            )
        payload = {
            "task": task.name,
            "seed": cfg.seed,
            "arch": arch.to_dict(),
            "source": source,
            "metrics": result.to_dict(),
            "model": str(model) if model else None,
            "feature_cache": cache.stats(),
        }
        write_json_atomic(files.result, payload)
        tracker.set_summary({key: value for key, value in result.to_dict().items() if key != "val_curve"})
        if model is not None:
            tracker.log_model(
                model, _artifact_name(task.name), {"task": task.name, "arch": arch.to_dict(), "source": source}
            )
    _print_child_summary(task, arch, result.to_dict(), source, run_dir)
    return result.val_accuracy


@contextmanager
def _removed_afterwards(staging: Path | None) -> Iterator[None]:
    """Remove what is left of the staging folder: nothing once it became the model, a partial model on failure."""
    try:
        yield
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def child_architecture(cfg: DictConfig, source: ChildSourceConfig) -> tuple[Architecture, dict[str, Any] | None]:
    """The architecture to train, and where it came from (None: ``child.arch`` itself)."""
    if source.source is None:
        return child_arch(cfg), None
    run_dir = Path(source.source).expanduser()
    row, rank = source.select.pick(run_dir, cfg.task)
    overridden = sorted(key.removeprefix(ARCH_PREFIX) for key in command_line_keys(cfg) if key.startswith(ARCH_PREFIX))
    fields = {**row.arch, **{name: cfg.child.arch[name] for name in overridden}}
    provenance = {
        "run": str(run_dir.resolve()),
        "task": row.task,
        "rank": rank,  # its place by validation reward, however it was selected
        "select": asdict(source.select),
        "trial": row.trial,
        "search_reward": row.reward,
        "overridden": overridden,
    }
    return from_config(Architecture, fields), provenance


def _artifact_name(task: str) -> str:
    """A W&B artifact name for ``task``'s model (letters, digits, ``-``, ``_`` and ``.`` only)."""
    return "model-" + re.sub(r"[^\w.-]", "-", task)


def _print_child_summary(
    task: Task, arch: Architecture, metrics: dict, source: dict[str, Any] | None, run_dir: Path
) -> None:
    table = Table(title=f"child on {task.name} ({task.language}, {task.num_classes} classes)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"):
        table.add_row(key, f"{metrics[key]:.4f}")
    table.add_row("parameters", f"{metrics['num_parameters']:,}")
    table.add_row("epochs", f"{metrics['epochs']} (scored at epoch {metrics['best_epoch']})")
    table.add_row("wall time", f"{metrics['total_seconds']:.1f} s (training {metrics['train_seconds']:.1f} s)")
    table.add_row("compute", f"{gflops(metrics)} GFLOPs (training and validation, counted: mnms/child/flops.py)")
    table.add_row("features", "from cache" if metrics["features_from_cache"] else "computed, now cached")
    console = Console(soft_wrap=True)  # a path or a command is one line, whatever the terminal's width
    console.print(table)
    if source is not None:
        overridden = f", with {', '.join(source['overridden'])} overridden" if source["overridden"] else ""
        console.print(
            f"architecture: rank {source['rank']} of {source['run']} (trial {source['trial']}, "
            f"search reward {source['search_reward']:.4f}{_within(source['select'])}){overridden}"
        )
    console.print(f"architecture: {arch.to_dict()}")
    files = RunDir(run_dir)
    console.print(f"result: {files.result}")
    if files.model.is_dir():
        console.print(f"model: {files.model}  (predict: python train.py mode=predict model={files.model} input=<file>)")


def _within(select: dict[str, Any]) -> str:
    """How ``child.select.within`` chose, for the console; nothing for a choice by rank."""
    if select.get("within") is None:
        return ""
    return f"; the cheapest in {select['cost']} within {select['within']} of the best validation accuracy"
