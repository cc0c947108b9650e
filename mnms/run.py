"""What ``train.py`` runs for each ``mode``: plain functions of a composed config and a run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mnms.arch import Architecture
from mnms.artifact import ARTIFACT_FILE, save_controller_artifact
from mnms.child import ChildTrainerConfig, evaluate_child
from mnms.evaluator import ChildRunner
from mnms.executors import build_evaluator
from mnms.feature_cache import FeatureCache
from mnms.search import Search, SearchConfig
from mnms.search_space import SearchSpace
from mnms.study import apply_study_mode
from mnms.strategies import PolicyGradientStrategy, build_strategy
from mnms.tasks import Task, load_task
from mnms.tracking import Tracker, TrackingConfig
from mnms.transfer import transfer_strategy
from mnms.utils.config import from_config, plain
from mnms.utils.io import RunDir, write_json_atomic

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_configured_task(cfg: DictConfig, name: str, max_examples: int | None = None) -> Task:
    """Load ``name`` the way every mode does: data dir, spec folders, example cap, seed.

    ``cfg.max_examples`` (quick runs of any mode) wins over a mode's own ``max_examples``.
    """
    spec_dirs = [CONF_DIR / "dataset", *map(Path, cfg.paths.task_specs)]
    cap = cfg.max_examples if cfg.max_examples is not None else max_examples
    return load_task(name, cfg.paths.data_dir, spec_dirs=spec_dirs, max_examples=cap, seed=cfg.seed)


def run_child(cfg: DictConfig, run_dir: Path) -> float:
    """Train ``child.arch`` on ``task`` once; print and save its metrics. Returns val accuracy."""
    task = load_configured_task(cfg, cfg.task)
    arch = from_config(Architecture, cfg.child.arch)
    trainer_cfg = from_config(ChildTrainerConfig, {**plain(cfg.trainer), "progress_bar": True})
    cache = FeatureCache(cfg.paths.cache_dir)
    result = evaluate_child(
        task, arch, trainer_cfg, cache, seed=cfg.seed, encoder_options=plain(cfg.encoders)
    )
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
    table.add_row("wall time", f"{metrics['total_seconds']:.1f} s (training {metrics['train_seconds']:.1f} s)")
    table.add_row("features", "from cache" if metrics["features_from_cache"] else "computed, now cached")
    console = Console()
    console.print(table)
    console.print(f"architecture: {arch.to_dict()}")
    console.print(f"result: {RunDir(run_dir).result}")


def run_search(cfg: DictConfig, run_dir: Path) -> float:
    """A (multitask) architecture search; returns the mean over tasks of the best reward."""
    cfg = apply_study_mode(cfg)
    run_dir = Path(cfg.resume) if cfg.resume else run_dir
    space = SearchSpace.from_config(plain(cfg.search_space))
    task_names = list(cfg.tasks)
    search_cfg = from_config(SearchConfig, cfg.search)
    tasks = {name: load_configured_task(cfg, name, search_cfg.max_examples) for name in task_names}
    strategy_args = (cfg.controller.kind, space, task_names, plain(cfg.controller.network),
                     plain(cfg.controller.policy), cfg.seed)
    transfer = plain(cfg.transfer) if cfg.transfer["from"] else None
    strategy = transfer_strategy(transfer, *strategy_args) if transfer else build_strategy(*strategy_args)
    runner = ChildRunner(tasks, from_config(ChildTrainerConfig, cfg.trainer), cfg.paths.cache_dir, plain(cfg.encoders))
    # What a resumed search must share with the original for the trial sequence to continue.
    signature = {
        "tasks": task_names, "seed": cfg.seed, "space": space.signature(), "controller": plain(cfg.controller),
        "batch_size": search_cfg.batch_size, "task_schedule": search_cfg.task_schedule,
        "reward": search_cfg.reward, "child": plain(cfg.child.arch), "trainer": plain(cfg.trainer),
        "examples": {name: {s: len(t.splits[s].texts) for s in t.splits} for name, t in tasks.items()},
        **({"transfer": transfer} if transfer else {}),
    }
    tracking = from_config(TrackingConfig, {**plain(cfg.logger), "dir": cfg.logger.dir or str(run_dir)})
    run_dir.mkdir(parents=True, exist_ok=True)
    evaluator = build_evaluator(plain(cfg.executor), runner)
    try:
        with Tracker(tracking, plain(cfg)) as tracker:
            search = Search(search_cfg, task_names, strategy, evaluator, run_dir, child_defaults=plain(cfg.child.arch),
                            seed=cfg.seed, signature=signature, tracker=tracker)
            summary = search.run()
            tracker.set_summary({f"best/{task}": best for task, best in summary["best"].items()})
            wandb_path = tracker.run_path
    finally:
        evaluator.close()
    controller_file = None
    if isinstance(strategy, PolicyGradientStrategy):  # random and Optuna searches train no controller to transfer
        controller_file = save_controller_artifact(run_dir / ARTIFACT_FILE, strategy, space, plain(cfg))
    summary = {**summary, "tasks": {name: {"language": t.language, "classes": t.num_classes} for name, t in tasks.items()},
               "strategy": cfg.controller.kind, "wandb_run": str(wandb_path) if wandb_path else None,
               "controller": str(controller_file) if controller_file else None}
    write_json_atomic(RunDir(run_dir).summary, summary)
    _print_search_summary(summary, run_dir)
    rewards = [best["reward"] for best in summary["best"].values()]
    return sum(rewards) / len(rewards) if rewards else 0.0


def _print_search_summary(summary: dict, run_dir: Path) -> None:
    table = Table(title=f"best architecture per task ({summary['trials']} trials, {summary['strategy']})")
    for column in ("task", "val acc", "test acc", "trial", "searched decisions"):
        table.add_column(column, justify="right" if "acc" in column or column == "trial" else "left")
    for task, best in summary["best"].items():
        arch = ", ".join(f"{k}={v}" for k, v in best["decisions"].items())
        table.add_row(task, f"{best['metrics']['val_accuracy']:.4f}", f"{best['metrics']['test_accuracy']:.4f}",
                      str(best["trial"]), arch)
    console = Console()
    console.print(table)
    console.print(f"controller/logging/checkpoint overhead: {summary['overhead_fraction']:.1%} of search time")
    console.print(f"records: {RunDir(run_dir).trials}  summary: {RunDir(run_dir).summary}")
    if summary["wandb_run"]:
        console.print(f"W&B run: {summary['wandb_run']}  (offline runs: `wandb sync <dir>`)")
    console.print(f"controller for transfer: {summary['controller']}" if summary["controller"]
                  else f"no {ARTIFACT_FILE}: {summary['strategy']} search trains no controller to transfer")


def run_propose(cfg: DictConfig, run_dir: Path) -> float | None:
    """``mode=propose`` (mnms.propose), imported on use because that module builds on this one's helpers."""
    from mnms.propose import propose

    return propose(cfg, run_dir)


MODES: dict[str, Callable[[DictConfig, Path], Any]] = {"child": run_child, "search": run_search, "propose": run_propose}


def run(cfg: DictConfig, run_dir: Path) -> Any:
    """Dispatch on ``cfg.mode``."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode={cfg.mode!r} is unknown; valid modes are {sorted(MODES)}")
    return MODES[cfg.mode](cfg, run_dir)
