"""The study report: plots and tables from search run dirs, written next to them.

    python -m mnms.report outputs/transfer-study/<time> [outputs/pretrain/<time>] [--out DIR]

Reads only the runs' own files (see ``load``); ``tables`` computes the numbers and
``plots`` draws the figures, each a plain function of the tidy trial table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mnms.report.load import find_run_dirs, load_jobs, load_task_embeddings, load_trials
from mnms.report.plots import (
    BAND,
    best_so_far_figure,
    decision_figure,
    decision_ranking,
    inherited_tasks,
    pareto_figure,
    placement_figure,
    reward_figure,
    similarity_figure,
)
from mnms.report.tables import (
    LEGEND,
    MIN_SEEDS,
    jobs_table,
    mode_sort_key,
    run_stats,
    task_table,
    transfer_verdicts,
)
from mnms.utils.io import RunDir, atomic_write, write_text_atomic

REPORT_FILE = "report.md"
FIRST_DECISION = "encoder"


def build_report(paths: Sequence[Path], out: Path | None = None, *, window: int = 10, decisions: int = 3) -> Path:
    """Write ``report.md`` and its PNGs into ``out``; returns the report's path.

    ``out`` defaults to the runs' common parent, or, when that is itself a run dir (one run
    reported), a ``<run>-report`` folder beside it: a report never writes into a run dir.

    ``window`` is the trial window of the moving-average reward and of the choice
    frequencies; ``decisions`` how many decision figures to draw: the encoder's (the paper's
    embedding module, the choice that sets a child's cost and language) first, then those
    that move most.
    """
    if window < 1 or decisions < 0:
        raise ValueError(f"window={window} must be >= 1 and decisions={decisions} >= 0")
    run_dirs = [path.resolve() for path in find_run_dirs(paths)]
    root = Path(os.path.commonpath(run_dirs))
    out = Path(out) if out is not None else (root.with_name(f"{root.name}-report") if root in run_dirs else root)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"--out {out}: cannot create or write it ({error.strerror}): give a folder you may write"
        ) from None
    jobs = load_jobs(run_dirs, root)
    trials = load_trials(jobs)
    stats = run_stats(trials)

    figures = {"best_so_far.png": best_so_far_figure(trials), "reward.png": reward_figure(trials, window)}
    if (pareto := pareto_figure(trials)) is not None:
        figures["pareto.png"] = pareto
    ranked = sorted(decision_ranking(trials, window), key=lambda name: name != FIRST_DECISION)  # stable
    for name in ranked[:decisions]:
        figures[f"decision_{name}.png"] = decision_figure(trials, name, window)
    embeddings = load_task_embeddings(jobs)
    own = dict(zip(jobs["label"], jobs["tasks"]))
    transfers = {run: embedding for run, embedding in embeddings.items() if inherited_tasks(embedding, own[run])}
    searches = {run: embedding for run, embedding in embeddings.items() if run not in transfers}
    if searches:
        figures["task_similarity.png"] = similarity_figure(searches)
    if transfers:
        figures["task_placement.png"] = placement_figure(transfers, own)
    modes = ", ".join(sorted(jobs["mode"].unique(), key=mode_sort_key))
    seeds = sorted(int(seed) for seed in jobs["seed"].unique())
    runs = f"{len(jobs)} run{'s' if len(jobs) != 1 else ''}"
    sections = [
        "# Search report",
        f"{runs} under `{_shown(root)}` (modes: {modes}; seeds: {seeds}), read from their `trials.jsonl`.",
        "## Results per task",
        LEGEND,
        *(f"### {task}\n\n{task_table(stats, task)}" for task in sorted(trials["task"].unique())),
        "## Did transfer help?",
        *(_verdicts(trials) or ["No task has both transfer and scratch runs: no verdict."]),
        "## Figures",
        f"Curves: the line is the mean over seeds, the band the {BAND}.",
        *(f"![{name.removesuffix('.png')}]({name})" for name in figures),
    ]
    if not embeddings:
        sections.append(
            "No `controller.pt` with two or more task embeddings among these runs: the task similarity map is skipped."
        )
    sections += ["## Runs", jobs_table(jobs, trials)]
    report = out / REPORT_FILE
    with RunDir(out).lock("the report", RunDir.REPORT_LOCK):  # one report writes into a folder at a time
        for name, figure in figures.items():
            atomic_write(out / name, lambda handle, figure=figure: figure.savefig(handle, format="png", dpi=110))
        write_text_atomic(report, "\n\n".join(sections) + "\n")
    return report


def _verdicts(trials) -> list[str]:
    lines = transfer_verdicts(trials)
    if not lines:
        return []
    rule = (
        f"Helped: with at least {MIN_SEEDS} seeds of each, every transfer seed's best validation accuracy "
        f"at the budget is above scratch's median; otherwise no clear difference."
    )
    return [rule, "\n".join(lines)]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, so a committed report names no home dir."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
