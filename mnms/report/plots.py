"""The study's figures, as plain functions of the tidy trial table.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global state,
no GUI backend, safe to call from tests and workers. Curves are per task (one panel
each) and per mode (one line each: the mean over seeds, with a min–max band over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnms.report.load import DECISION_PREFIX, decision_names
from mnms.report.tables import best_so_far, mode_sort_key
from mnms.search.cost import nondominated

BAND = "min–max over seeds"
PANEL = (4.2, 3.2)  # inches per panel
MIN_WIDTH = 7.0  # inches: room for a two-line title and a legend beside a single panel
MIN_SPAN = 0.05  # the y-axis of a curve covers at least this much accuracy or reward, so noise looks like noise


def _modes(trials: pd.DataFrame) -> list[str]:
    return sorted(trials["mode"].unique(), key=mode_sort_key)


def _colours(trials: pd.DataFrame) -> dict[str, str]:
    """One colour per mode, the same in every figure of a report."""
    return {mode: f"C{i}" for i, mode in enumerate(_modes(trials))}


def _panels(keys: list, columns: int = 3) -> tuple[Figure, dict]:
    """A grid with one panel per key, ``columns`` wide; spare cells hidden."""
    columns = min(len(keys), columns)
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(max(MIN_WIDTH, PANEL[0] * columns), PANEL[1] * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(keys) :]:
        ax.set_axis_off()
    return fig, dict(zip(keys, axes))


def _mode_curves(trials: pd.DataFrame, value: pd.Series, ylabel: str, title: str) -> Figure:
    """Per task panel, per mode: the mean of ``value`` over seeds against the task's trials, min–max band."""
    frame = trials.assign(value=value)
    colours = _colours(trials)
    fig, panels = _panels(sorted(trials["task"].unique()))
    for task, ax in panels.items():
        for mode in _modes(trials):
            mine = frame[(frame["task"] == task) & (frame["mode"] == mode)]
            if mine.empty:
                continue
            wide = mine.pivot(index="task_trial", columns="run", values="value")
            ax.plot(wide.index, wide.mean(axis=1), color=colours[mode], label=f"{mode} (n={wide.shape[1]})")
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=colours[mode], alpha=0.2, lw=0)
        ax.set(title=task, xlabel="trials of this task", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _at_least_span(ax, MIN_SPAN)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{title}\nline: mean over seeds, band: {BAND}")
    return fig


def _at_least_span(ax, span: float) -> None:
    """Widen the y-axis around its middle to ``span`` when autoscaling made it narrower: a
    0.004-tall axis draws a difference of 0.001 as a cliff."""
    low, high = ax.get_ylim()
    if high - low < span:
        middle = (low + high) / 2
        ax.set_ylim(middle - span / 2, middle + span / 2)


def best_so_far_figure(trials: pd.DataFrame) -> Figure:
    """Best validation accuracy so far against the task's trials."""
    return _mode_curves(trials, best_so_far(trials), "best validation accuracy", "Best validation accuracy so far")


def reward_figure(trials: pd.DataFrame, window: int) -> Figure:
    """Moving average of the reward over the last ``window`` trials of the task (failed trials count)."""
    keys = [trials["run"], trials["task"]]
    average = trials.groupby(keys)["reward"].transform(lambda r: r.rolling(window, min_periods=1).mean())
    return _mode_curves(trials, average, f"reward, moving average of {window}", "Reward")


def pareto_figure(trials: pd.DataFrame) -> Figure | None:
    """Validation accuracy against counted compute, a panel per task: every finished child (dots, one
    colour per mode, seeds pooled) and each mode's Pareto front (the step line: no child of that mode
    is both cheaper and more accurate). None when no trial has its FLOPs (records before they were counted)."""
    counted = trials.dropna(subset=["val_accuracy", "flops"]).drop_duplicates(["run", "task", "arch"])
    if counted.empty:
        return None
    colours = _colours(trials)
    fig, panels = _panels(sorted(counted["task"].unique()))
    for task, ax in panels.items():
        for mode in _modes(trials):
            mine = counted[(counted["task"] == task) & (counted["mode"] == mode)]
            if mine.empty:
                continue
            ax.scatter(mine["flops"], mine["val_accuracy"], s=10, alpha=0.35, color=colours[mode], lw=0)
            front = _front(mine)
            ax.step(front["flops"], front["val_accuracy"], where="post", color=colours[mode], label=mode)
        ax.set(title=task, xscale="log", xlabel="training compute (FLOPs)", ylabel="validation accuracy")
        _at_least_span(ax, MIN_SPAN)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Accuracy against compute\ndots: children (seeds pooled), line: each mode's Pareto front")
    return fig


def _front(children: pd.DataFrame) -> pd.DataFrame:
    """The children no other beats on both accuracy and FLOPs, cheapest first (``mnms.search.cost``'s rule)."""
    rows = nondominated(children.to_dict("records"), lambda row: row["flops"], lambda row: row["val_accuracy"])
    return pd.DataFrame(rows, columns=children.columns)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _label(value: object) -> str:
    return f"{value:g}" if _is_number(value) else str(value)


def choice_frequencies(trials: pd.DataFrame, decision: str, window: int) -> pd.DataFrame:
    """Fraction of each choice of ``decision`` per window of ``window`` task trials (rows: window start).

    Only trials that made the decision count (``width_1`` is not made without a hidden layer).
    """
    made = trials.dropna(subset=[DECISION_PREFIX + decision])
    start = (made["task_trial"] - 1) // window * window + 1
    return pd.crosstab(start, made[DECISION_PREFIX + decision].map(_label), normalize="index")


def decision_ranking(trials: pd.DataFrame, window: int) -> list[str]:
    """Decisions by how much their choice frequencies move from the first to the last window.

    The mean over (mode, task) of the total-variation distance: the decisions the searches
    specialise most come first.
    """

    def shift(decision: str) -> float:
        distances = []
        for _, cell in trials.groupby(["mode", "task"]):
            freq = choice_frequencies(cell, decision, window)
            if len(freq) > 1:
                distances.append(0.5 * (freq.iloc[-1] - freq.iloc[0]).abs().sum())
        return sum(distances) / len(distances) if distances else 0.0

    return sorted(decision_names(trials), key=lambda name: (-shift(name), name))


def decision_figure(trials: pd.DataFrame, decision: str, window: int) -> Figure:
    """How the choice of ``decision`` evolves: stacked bars per window of trials, a panel per (task, mode)."""
    column = DECISION_PREFIX + decision
    values = trials[column].dropna().unique()
    choices = [_label(v) for v in sorted(values, key=lambda v: (not _is_number(v), v if _is_number(v) else str(v)))]
    made = trials.dropna(subset=[column])
    cells = sorted(
        {(task, mode) for task, mode in zip(made["task"], made["mode"])},
        key=lambda cell: (cell[0], mode_sort_key(cell[1])),
    )
    fig, panels = _panels(cells, columns=4)
    for (task, mode), ax in panels.items():
        freq = choice_frequencies(made[(made["task"] == task) & (made["mode"] == mode)], decision, window)
        freq = freq.reindex(columns=choices, fill_value=0.0)
        bottom = pd.Series(0.0, index=freq.index)
        for k, choice in enumerate(choices):
            ax.bar(
                freq.index,
                freq[choice],
                bottom=bottom,
                width=0.9 * window,
                align="edge",
                color=f"C{k % 10}",
                label=choice,
            )
            bottom += freq[choice]
        ax.set(title=f"{task} · {mode}", xlabel="trials of this task", ylabel="share of trials", ylim=(0, 1))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = next(iter(panels.values())).get_legend_handles_labels()
    fig.legend(handles, labels, title=decision, loc="outside right upper")
    fig.suptitle(f"Choices of {decision!r}\nshare per window of {window} trials, seeds pooled")
    return fig


Embedding = tuple[list[str], torch.Tensor]


def inherited_tasks(embedding: Embedding, own: Sequence[str]) -> list[str]:
    """The tasks a run's controller embeds but the run did not search: what a transfer run inherited."""
    return [name for name in embedding[0] if name not in own]


def placement_table(embeddings: dict[str, Embedding], own: dict[str, list[str]]) -> pd.DataFrame:
    """A row per (transfer run, task it searched), a column per inherited task: their cosine.

    The cosine is taken inside each run's own controller. A descriptor projection keeps
    learning during transfer, so the inherited tasks' vectors differ from run to run and two
    runs' vectors are not in one space; within a run they are.
    """
    columns: dict[str, None] = {}
    rows = {}
    for run, embedding in embeddings.items():
        names, vectors = embedding
        inherited = inherited_tasks(embedding, own[run])
        columns.update(dict.fromkeys(inherited))
        unit = torch.nn.functional.normalize(vectors.float(), dim=1)
        index = {name: i for i, name in enumerate(names)}
        for task in (name for name in names if name in own[run]):
            label = run if len(own[run]) == 1 else f"{task} ({run})"
            rows[label] = {other: float(unit[index[task]] @ unit[index[other]]) for other in inherited}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(columns))


def placement_figure(embeddings: dict[str, Embedding], own: dict[str, list[str]]) -> Figure:
    """``placement_table`` as a heat map: which inherited tasks each transfer run's task ended up near."""
    table = placement_table(embeddings, own)
    fig = Figure(
        figsize=(max(MIN_WIDTH, 2.5 + 0.42 * table.shape[1]), 2.0 + 0.3 * table.shape[0]), layout="constrained"
    )
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(table.shape[0]), table.index, fontsize="small")
    ax.set(xlabel="tasks the controller was pre-trained on", ylabel="transfer run (its task)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity, within the run's controller")
    fig.suptitle("Where each transfer run's task embedding ended, among the pre-trained tasks")
    return fig


def similarity_figure(embeddings: dict[str, Embedding]) -> Figure:
    """Cosine similarity of the learned task embeddings, a panel per controller (two
    controllers' embedding spaces do not align)."""
    side = max(5.5, 0.42 * max(len(names) for names, _ in embeddings.values()))
    fig = Figure(figsize=(max(MIN_WIDTH, side * len(embeddings)), side), layout="constrained")
    axes = fig.subplots(1, len(embeddings), squeeze=False).ravel()
    for ax, (title, (names, vectors)) in zip(axes, embeddings.items()):
        unit = torch.nn.functional.normalize(vectors, dim=1)
        similarity = (unit @ unit.T).numpy()
        image = ax.imshow(similarity, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="small")
        ax.set_yticks(range(len(names)), names, fontsize="small")
        if len(names) <= 12:
            for (r, c), value in pd.DataFrame(similarity).stack().items():
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if abs(value) > 0.6 else "black",
                )
        ax.set_title(title, fontsize="small")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    fig.suptitle("Task embeddings of the controller")
    return fig
