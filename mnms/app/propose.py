"""``mode=propose``: a pre-trained controller's most likely architectures for ``task``, without searching.

Prints and saves them (``proposals.json``) with their probabilities under the
controller; ``propose.train=true`` trains each once, as a search would.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mnms.app.common import child_arch, child_trainer, encoder_options, load_configured_task, task_descriptor
from mnms.child.arch import complete_arch
from mnms.executors.runner import ChildRunner
from mnms.executors.trial import TrialRequest
from mnms.transfer.artifact import load_controller_artifact
from mnms.transfer.decode import ProposeConfig, beam_search, controller_for_task
from mnms.transfer.warm_start import TransferConfig
from mnms.utils.config import ConfigError, from_config
from mnms.utils.io import RunDir, write_json_atomic


def run_propose(cfg: DictConfig, run_dir: Path) -> float | None:
    """Print and save the top proposals for ``task``; with ``propose.train`` their accuracy.

    Returns the best validation accuracy of the trained proposals (None when nothing was trained).
    """
    transfer = TransferConfig.from_mapping(cfg.transfer)
    if transfer.source is None:
        raise ConfigError("mode=propose needs transfer.from=<controller.pt or a search run dir holding one>")
    options = from_config(ProposeConfig, cfg.propose)
    artifact = load_controller_artifact(transfer.source)
    describe = functools.partial(task_descriptor, cfg)
    controller, embedding = controller_for_task(artifact, cfg.task, transfer.init, cfg.seed, describe)
    ranked = beam_search(controller, cfg.task, options.k)  # greedy is a beam of width 1 (ProposeConfig checks k=1)
    rows = [
        {"rank": rank, "decisions": r.arch, "probability": r.probability, "log_prob": r.log_prob}
        for rank, r in enumerate(ranked, start=1)
    ]
    if options.train:
        _train(cfg, rows)
    payload = {
        "task": cfg.task,
        "embedding": embedding,
        "controller": str(artifact.path),
        "pre_trained_tasks": artifact.task_names,
        "method": options.method,
        "k": options.k,
        "seed": cfg.seed,
        "proposals": rows,
    }
    files = RunDir(run_dir)
    write_json_atomic(files.proposals, payload)
    _print_proposals(payload, files)
    accuracies = [row["metrics"]["val_accuracy"] for row in rows if row.get("status") == "ok"]
    return max(accuracies) if accuracies else None


def _train(cfg: DictConfig, rows: list[dict[str, Any]]) -> None:
    """Train each proposal once as ``mode=child`` would (no time limit unless ``trainer.time_limit_s`` sets one),
    its unsearched fields from ``child.arch`` as a search fills them; add what it scored to its row."""
    task = load_configured_task(cfg, cfg.task)
    runner = ChildRunner({task.name: task}, child_trainer(cfg), cfg.paths.cache_dir, encoder_options(cfg))
    defaults = child_arch(cfg).to_dict()
    for row in rows:
        arch = complete_arch(row["decisions"], defaults)
        outcome = runner(TrialRequest(row["rank"], task.name, arch, cfg.seed))
        row.update(arch=arch, status=outcome.status, metrics=outcome.metrics, error=outcome.error)


def _print_proposals(payload: dict[str, Any], files: RunDir) -> None:
    trained = any("status" in row for row in payload["proposals"])
    table = Table(title=f"{payload['method']} proposals for {payload['task']} (task embedding: {payload['embedding']})")
    for column in ("rank", "probability", "decisions") + (("val acc", "test acc") if trained else ()):
        table.add_column(column, justify="left" if column == "decisions" else "right")
    for row in payload["proposals"]:
        cells = [
            str(row["rank"]),
            f"{row['probability']:.4f}",
            ", ".join(f"{k}={v}" for k, v in row["decisions"].items()),
        ]
        if trained and row["status"] == "ok":
            cells += [f"{row['metrics'][key]:.4f}" for key in ("val_accuracy", "test_accuracy")]
        elif trained:
            cells += [row["status"], row["error"] or ""]
        table.add_row(*cells)
    console = Console(soft_wrap=True)
    console.print(table)
    console.print(f"controller: {payload['controller']}  proposals: {files.proposals}")
