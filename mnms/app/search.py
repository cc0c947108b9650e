"""``mode=search``: one strategy searches architectures for all ``tasks``; the run dir keeps everything."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnms.app.common import (
    child_arch,
    child_trainer,
    encoder_options,
    load_configured_task,
    task_descriptor,
    tracking_config,
)
from mnms.app.study import check_study_job
from mnms.child.config import ChildTrainerConfig, validates_every_epoch
from mnms.data.tasks import Task
from mnms.executors import executor_config, make_executor
from mnms.executors.runner import ChildRunner
from mnms.search.loop import Search, SearchConfig, resume_signature
from mnms.search.records import resumable_run_dir
from mnms.search.space import SearchSpace
from mnms.search.strategies import STRATEGIES, Strategy, make_strategy, strategy_config
from mnms.tracking import Tracker
from mnms.transfer.artifact import save_controller_artifact
from mnms.transfer.warm_start import Describe, TransferConfig, warm_start
from mnms.utils.config import ConfigError, from_config, plain
from mnms.utils.faults import kill_point
from mnms.utils.io import RunDir, write_json_atomic, write_text_atomic


def run_search(cfg: DictConfig, run_dir: Path) -> float:
    """A (multitask) architecture search; returns the mean over tasks of the best reward.

    The run dir (``resume=``'s, or Hydra's) is locked for the whole search: a second
    search started in it fails at once.
    """
    run_dir = resumable_run_dir(cfg.resume) if cfg.resume else run_dir
    if not cfg.tasks:
        raise ConfigError("tasks=[] names no task: give at least one, e.g. tasks=[sst2,trec]")
    with RunDir(run_dir).lock():
        kill_point("search.setup")
        return _search(cfg, run_dir)


def _search(cfg: DictConfig, run_dir: Path) -> float:
    space = SearchSpace.from_config(plain(cfg.search_space))
    trainer_cfg = child_trainer(cfg)
    child = child_arch(cfg).to_dict()
    space.check_buildable(child)
    search_cfg = from_config(SearchConfig, cfg.search)
    _check_pruner(search_cfg, trainer_cfg)
    executor_cfg = executor_config(cfg.executor)
    if getattr(executor_cfg, "requests_gpus", False) and trainer_cfg.accelerator == "cpu":
        raise ConfigError(
            "the executor gives children GPUs (executor.gpus_per_child or executor.gpus) but "
            "trainer.accelerator=cpu trains them on CPUs, leaving the GPUs idle: set trainer.accelerator=auto, "
            "or drop the executor's GPU setting"
        )
    transfer = TransferConfig.from_mapping(cfg.transfer)
    strategy_cfg = strategy_config(cfg.strategy)
    check_study_job(cfg, transfer.source, STRATEGIES[strategy_cfg.kind].trains_controller)
    tasks = {name: load_configured_task(cfg, name, search_cfg.max_examples) for name in cfg.tasks}
    strategy = _strategy(strategy_cfg, space, list(tasks), transfer, cfg.seed, functools.partial(task_descriptor, cfg))
    signature = resume_signature(
        tasks=list(tasks),
        seed=cfg.seed,
        space=space,
        strategy=STRATEGIES[strategy_cfg.kind].resume_settings(strategy_cfg),
        search=search_cfg,
        child=child,
        trainer=asdict(trainer_cfg),
        examples={name: {split: len(data) for split, data in t.splits.items()} for name, t in tasks.items()},
        transfer=transfer.to_mapping() if transfer.source else None,
    )
    runner = ChildRunner(tasks, trainer_cfg, cfg.paths.cache_dir, encoder_options(cfg))
    tracking = tracking_config(cfg, run_dir)
    executor = make_executor(executor_cfg, runner)
    try:
        with Tracker(tracking, plain(cfg)) as tracker:
            search = Search(
                search_cfg,
                list(tasks),
                strategy,
                executor,
                run_dir,
                child_defaults=child,
                seed=cfg.seed,
                signature=signature,
                tracker=tracker,
            )
            write_text_atomic(RunDir(run_dir).config, OmegaConf.to_yaml(cfg))  # this search's settings, checked
            summary = search.run()
            tracker.set_summary({f"best/{task}": best for task, best in summary["best"].items()})
            wandb_path = tracker.run_path
    finally:
        executor.close()
    return _finish(cfg, run_dir, summary, strategy, space, tasks, wandb_path)


def _check_pruner(search: SearchConfig, trainer: ChildTrainerConfig) -> None:
    """Refuse pruner settings that could never stop a child, before anything trains."""
    if search.pruner == "none":
        return
    if not validates_every_epoch(trainer):
        raise ConfigError(
            f"search.pruner={search.pruner} judges children by their validation accuracy after each epoch, "
            "but trainer.patience=null with trainer.epoch_selection=last validates only at the end: "
            "set trainer.epoch_selection=best or a trainer.patience, or search.pruner=none"
        )
    first, name = (
        (search.pruner_warmup_epochs, "pruner_warmup_epochs")
        if search.pruner == "median"
        else (search.pruner_min_epochs, "pruner_min_epochs")
    )
    if first >= trainer.max_epochs:  # a child is never stopped at its last epoch: that saves nothing
        raise ConfigError(
            f"search.{name}={first} with trainer.max_epochs={trainer.max_epochs}: search.pruner={search.pruner} "
            f"could never stop a child (its first bar is at epoch {first}, and no child is stopped at its last "
            f"epoch): set search.{name} below {trainer.max_epochs}, or search.pruner=none"
        )


def _strategy(
    config: Any, space: SearchSpace, tasks: list[str], transfer: TransferConfig, seed: int, describe: Describe
) -> Strategy:
    """The configured strategy, starting from the pre-trained controller when ``transfer.from`` names one.

    A new controller with ``task_descriptors`` gets every task's descriptor; a transferred one,
    those of the new tasks ``transfer.init=descriptor`` adds.
    """
    if transfer.source:
        return make_strategy(
            config, space, tasks, seed, controller=warm_start(transfer, config, space, tasks, seed, describe)
        )
    controller = getattr(config, "controller", None)
    descriptors = {task: describe(task) for task in tasks} if controller and controller.task_descriptors else None
    return make_strategy(config, space, tasks, seed, descriptors=descriptors)


def _finish(
    cfg: DictConfig,
    run_dir: Path,
    summary: dict[str, Any],
    strategy: Strategy,
    space: SearchSpace,
    tasks: dict[str, Task],
    wandb_path: Path | None,
) -> float:
    """Save the controller (strategies that train one), write ``summary.json``, print the best per task."""
    files = RunDir(run_dir)
    controller = (
        save_controller_artifact(files.controller, strategy, space, plain(cfg)) if strategy.trains_controller else None
    )
    summary = {
        **summary,
        "tasks": {name: {"language": t.language, "classes": t.num_classes} for name, t in tasks.items()},
        "strategy": strategy.name,
        "wandb_run": str(wandb_path) if wandb_path else None,
        "controller": str(controller) if controller else None,
    }
    if len(summary["unsuccessful"]) == len(tasks):
        summary |= {"status": "failed", "error": _nothing_succeeded(summary["unsuccessful"], files)}
    write_json_atomic(files.summary, summary)
    if summary.get("status") == "failed":
        raise NoChildSucceeded(summary["error"])
    _print_search_summary(summary, files)
    failure = cfg.search.failure_reward  # what a task no child finished for scored
    return sum(summary["best"][t]["reward"] if t in summary["best"] else failure for t in tasks) / len(tasks)


class NoChildSucceeded(RuntimeError):
    """Every child of a search failed: there is no architecture to report, so the job fails."""


def _nothing_succeeded(unsuccessful: dict[str, dict[str, Any]], files: RunDir) -> str:
    trials = sum(entry["trials"] for entry in unsuccessful.values())
    causes = "; ".join(
        f"{task}: {entry['error'] if entry['trials'] else 'no trial reached it'}"
        for task, entry in unsuccessful.items()
    )
    return (
        f"no child finished in {trials} trials; the most common error per task -- {causes}. Every trial and "
        f"its error is in {files.trials}; fix the cause (an encoder that is not installed, a trainer limit too "
        "tight, ...) and start a new search"
    )


def _print_search_summary(summary: dict, files: RunDir) -> None:
    table = Table(title=f"best architecture per task ({summary['trials']} trials, {summary['strategy']})")
    for column in ("task", "val acc", "test acc", "trial", "searched decisions"):
        table.add_column(column, justify="right" if "acc" in column or column == "trial" else "left")
    for task, best in summary["best"].items():
        arch = ", ".join(f"{k}={v}" for k, v in best["decisions"].items())
        table.add_row(
            task,
            f"{best['metrics']['val_accuracy']:.4f}",
            f"{best['metrics']['test_accuracy']:.4f}",
            str(best["trial"]),
            arch,
        )
    for task, entry in summary["unsuccessful"].items():
        failed = (
            f"no child finished in {entry['trials']} trials: {entry['error']}"
            if entry["trials"]
            else "not searched: search.trials ran out before its turn"
        )
        table.add_row(task, "-", "-", "-", f"[red]{escape(failed)}[/red]")
    console = Console()
    console.print(table)
    console.print(f"controller/logging/checkpoint overhead: {summary['overhead_fraction']:.1%} of search time")
    console.print(f"records: {files.trials}  summary: {files.summary}")
    if summary["best"]:
        task = next(iter(summary["best"]))
        console.print(f"train and save a best model: python train.py mode=child child.from={files.path} task={task}")
    if summary["wandb_run"]:
        console.print(f"W&B run: {summary['wandb_run']}  (offline runs: `wandb sync <dir>`)")
    console.print(
        f"controller for transfer: {summary['controller']}"
        if summary["controller"]
        else f"no {files.CONTROLLER}: {summary['strategy']} search trains no controller to transfer"
    )
