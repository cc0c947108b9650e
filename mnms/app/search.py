"""``mode=search``: one strategy searches architectures for all ``tasks``; the run dir keeps everything."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnms.app.common import (
    child_arch,
    child_trainer,
    encoder_options,
    load_configured_task,
    logged_config,
    task_descriptor,
    tracking_config,
)
from mnms.app.logs import record_in_log
from mnms.app.study import check_study_job
from mnms.child.flops import gflops
from mnms.executors import executor_config, make_executor
from mnms.search.config import SearchConfig
from mnms.search.job import SearchJob
from mnms.search.mode import search_mode
from mnms.search.records import TrialLog, resumable_run_dir
from mnms.search.resume import Checkpoint
from mnms.search.space import SearchSpace
from mnms.search.strategies import STRATEGIES, Strategy, strategy_config
from mnms.tracking import Tracker, previous_run_id
from mnms.transfer.artifact import save_controller_artifact
from mnms.transfer.warm_start import Describe, TransferConfig, warm_start
from mnms.utils.config import ConfigError, from_config, plain
from mnms.utils.faults import kill_point
from mnms.utils.io import RunDir, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def run_search(cfg: DictConfig, run_dir: Path) -> float:
    """A (multitask) architecture search; returns the mean over tasks of the best reward.

    The run dir (``resume=``'s, or Hydra's) is locked for the whole search: a second
    search started in it fails at once.
    """
    run_dir = resumable_run_dir(cfg.resume) if cfg.resume else run_dir
    if isinstance(cfg.tasks, str):  # tasks=mr: one task, not the letters of its name
        cfg.tasks = [cfg.tasks]
    if not cfg.tasks:
        raise ConfigError("tasks=[] names no task: give at least one, e.g. tasks=[sst2,trec]")
    with RunDir(run_dir).lock():
        kill_point("search.setup")
        return _search(cfg, run_dir)


def _search(cfg: DictConfig, run_dir: Path) -> float:
    space = SearchSpace.from_config(plain(cfg.search_space))
    trainer_cfg = child_trainer(cfg)
    child = child_arch(cfg)
    search_cfg = from_config(SearchConfig, cfg.search)
    SearchJob.check(space, child, search_cfg, trainer_cfg)  # before any task loads
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
    job = SearchJob(
        tasks={name: load_configured_task(cfg, name, search_cfg.max_examples) for name in cfg.tasks},
        space=space,
        strategy=strategy_cfg,
        search=search_cfg,
        trainer=trainer_cfg,
        child=child,
        encoders=encoder_options(cfg),
        seed=cfg.seed,
        cache_dir=cfg.paths.cache_dir,
        transfer=transfer.to_mapping() if transfer.source else None,
    )
    strategy = _strategy(job, transfer, functools.partial(task_descriptor, cfg))
    mode = search_mode(
        strategy_cfg.kind,
        job.task_names,
        trains_controller=strategy.trains_controller,
        transfer_from=transfer.source,
        transfer_init=transfer.init,
        study_mode=OmegaConf.select(cfg, "study.mode"),
    )
    group = ",".join(sorted(job.task_names))
    tracking = tracking_config(cfg, run_dir, group=group, job_type=mode, name=f"{mode}-{cfg.seed}")
    continued = _continued(job, run_dir, Path(tracking.dir))
    if continued:
        done, total = continued["first_trial"], job.search.trials
        if done >= total:
            log.info(
                "%s already has %d of search.trials=%d: nothing to train (search.trials=N extends it)",
                run_dir,
                done,
                total,
            )
        else:
            log.info("resuming %s at trial %d of %d", run_dir, done, total)
    executor = make_executor(executor_cfg, job.runner())
    try:
        with Tracker(tracking, logged_config(cfg, tracking, unused=("task",)), **continued) as tracker:
            search = job.build(run_dir, strategy=strategy, executor=executor, tracker=tracker)
            write_text_atomic(RunDir(run_dir).config, OmegaConf.to_yaml(cfg))  # this search's settings, checked
            summary = {**search.run(), "mode": mode}
            tracker.set_summary({f"best/{task}": best for task, best in summary["best"].items()})
            if search.stopping and summary["trials"] < job.search.trials:  # a Ctrl-C during the last batch: done
                _interrupted(run_dir, summary)
            wandb_path = tracker.run_path
    finally:
        executor.close()
    return _finish(cfg, run_dir, summary, strategy, job, wandb_path)


def _continued(job: SearchJob, run_dir: Path, wandb_dir: Path) -> dict[str, Any]:
    """For a search that goes on in ``run_dir``: refused now if it may not (before a W&B run starts), else the
    W&B run to go on with and the trials it has; nothing for a new search."""
    if not RunDir(run_dir).checkpoint.exists():
        return {}
    log = TrialLog(run_dir)
    try:
        state = Checkpoint(run_dir, job.signature()).load(log)
        # W&B goes on from the checkpoint: a sync search trains (and logs) again what came after it.
        first = state["trials"] if state is not None else len(log)
        return {"run_id": previous_run_id(wandb_dir), "first_trial": first}
    finally:
        log.close()


def _interrupted(run_dir: Path, summary: dict[str, Any]) -> NoReturn:
    """Ctrl-C: keep what the search found in ``summary.json`` (status ``interrupted``), say how to go on, exit 130."""
    command = f"python train.py resume={run_dir}"
    write_json_atomic(RunDir(run_dir).summary, {**summary, "status": "interrupted", "resume": command})
    done = f"interrupted after {summary['trials']} trials; all of it is in {run_dir}"
    print(f"{done}. Go on with: {command}", file=sys.stderr)
    record_in_log(f"{done}. Go on with: {command}", logging.WARNING)
    raise SystemExit(130)


def _strategy(job: SearchJob, transfer: TransferConfig, describe: Describe) -> Strategy:
    """The configured strategy, starting from the pre-trained controller when ``transfer.from`` names one.

    A new controller with ``task_descriptors`` gets every task's descriptor; a transferred one,
    those of the new tasks ``transfer.init=descriptor`` adds.
    """
    if transfer.source:
        return job.make_strategy(
            controller=warm_start(transfer, job.strategy, job.space, job.task_names, job.seed, describe)
        )
    controller = getattr(job.strategy, "controller", None)
    if controller and controller.task_descriptors:
        return job.make_strategy(descriptors={task: describe(task) for task in job.tasks})
    return job.make_strategy()


def _finish(
    cfg: DictConfig, run_dir: Path, summary: dict[str, Any], strategy: Strategy, job: SearchJob, wandb_path: Path | None
) -> float:
    """Save the controller (strategies that train one), write ``summary.json``, print the best per task."""
    files = RunDir(run_dir)
    controller = (
        save_controller_artifact(files.controller, strategy, job.space, plain(cfg))
        if strategy.trains_controller
        else None
    )
    summary = {
        **summary,
        "tasks": {name: {"language": t.language, "classes": t.num_classes} for name, t in job.tasks.items()},
        "strategy": strategy.name,
        "wandb_run": str(wandb_path) if wandb_path else None,
        "controller": str(controller) if controller else None,
    }
    if len(summary["unsuccessful"]) == len(job.tasks):
        summary |= {"status": "failed", "error": _nothing_succeeded(summary["unsuccessful"], files)}
    write_json_atomic(files.summary, summary)
    if summary.get("status") == "failed":
        raise NoChildSucceeded(summary["error"])
    _print_search_summary(summary, files)
    failure = job.search.failure_reward  # what a task no child finished for scored
    best = summary["best"]
    return sum(best[t]["reward"] if t in best else failure for t in job.tasks) / len(job.tasks)


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
    for column in ("task", "val acc", "test acc", "GFLOPs", "trial", "distinct", "capped", "searched decisions"):
        # Cells fold rather than end in "…" on a narrow or piped console: every decision stays readable.
        table.add_column(
            column, justify="left" if column in ("task", "searched decisions") else "right", overflow="fold"
        )
    distinct = summary.get("distinct", {})  # architectures each task trained: a reused trial trains none
    for task, best in summary["best"].items():
        arch = ", ".join(f"{k}={v}" for k, v in best["decisions"].items())
        table.add_row(
            task,
            f"{best['metrics']['val_accuracy']:.4f}",
            f"{best['metrics']['test_accuracy']:.4f}",
            gflops(best["metrics"]),
            str(best["trial"]),
            str(distinct.get(task, "-")),
            str(summary.get("capped", {}).get(task, "-")),  # children cut by trainer.time_limit_s
            arch,
        )
    for task, entry in summary["unsuccessful"].items():
        failed = (
            f"no child finished in {entry['trials']} trials: {entry['error']}"
            if entry["trials"]
            else "not searched: search.trials ran out before its turn"
        )
        table.add_row(task, "-", "-", "-", "-", "-", "-", f"[red]{escape(failed)}[/red]")
    console = Console(soft_wrap=True)  # a path or a command is one line, whatever the terminal's width
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
