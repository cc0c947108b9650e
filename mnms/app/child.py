"""``mode=child``: train ``child.arch`` on ``task`` once; print and save what it scored."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lightning_modules.trainer import evaluate_child
from mnms.app.common import child_arch, child_trainer, encoder_options, load_configured_task
from mnms.child.arch import Architecture
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task
from mnms.utils.io import RunDir, write_json_atomic


def run_child(cfg: DictConfig, run_dir: Path) -> float:
    """Train the child once; writes ``result.json`` and returns its validation accuracy."""
    trainer_cfg = child_trainer(cfg)  # conf/mode/child.yaml turns its progress bar on
    arch = child_arch(cfg)
    task = load_configured_task(cfg, cfg.task)
    cache = FeatureCache(cfg.paths.cache_dir)
    result = evaluate_child(task, arch, trainer_cfg, cache, seed=cfg.seed, encoder_options=encoder_options(cfg))
    payload = {
        "task": task.name,
        "seed": cfg.seed,
        "arch": arch.to_dict(),
        "metrics": result.to_dict(),
        "feature_cache": cache.stats(),
    }
    write_json_atomic(RunDir(run_dir).result, payload)
    _print_child_summary(task, arch, result.to_dict(), run_dir)
    return result.val_accuracy


def _print_child_summary(task: Task, arch: Architecture, metrics: dict, run_dir: Path) -> None:
    table = Table(title=f"child on {task.name} ({task.language}, {task.num_classes} classes)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"):
        table.add_row(key, f"{metrics[key]:.4f}")
    table.add_row("parameters", f"{metrics['num_parameters']:,}")
    table.add_row("epochs", f"{metrics['epochs']} (scored at epoch {metrics['best_epoch']})")
    table.add_row("wall time", f"{metrics['total_seconds']:.1f} s (training {metrics['train_seconds']:.1f} s)")
    table.add_row("features", "from cache" if metrics["features_from_cache"] else "computed, now cached")
    console = Console()
    console.print(table)
    console.print(f"architecture: {arch.to_dict()}")
    console.print(f"result: {RunDir(run_dir).result}")
