"""The study's numbers: per (task, mode), how good (mean ± std over seeds) and how fast
(the median cost over seeds to a target, and its speed-up over scratch).

Everything is counted in a task's own trials (``task_trial``), so a multitask run's
trials on other tasks don't count against it. "Scratch's final best" is the mean over
scratch seeds of each seed's best validation accuracy on the task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

CHECKPOINTS = (10, 25, 50, 100)  # best validation accuracy after this many trials of the task
FRACTIONS = (0.95, 0.99)  # trials needed to reach this fraction of scratch's final best
TOP_K = 5  # test accuracy of the top-k distinct architectures chosen on validation
OPENING = 10  # mean reward of a task's first trials: where a search starts (transfer's head start)
BASELINE = "scratch"
MIN_SEEDS = 3  # fewer seeds than this per mode: no verdict, and the tables say the numbers are anecdotes
MODE_ORDER = ("transfer", "transfer-descriptor", BASELINE, "random", "optuna", "multitask")


def mode_sort_key(mode: str) -> tuple[int, str]:
    """The study's modes in a fixed reading order, any other mode after them by name."""
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def best_so_far(trials: pd.DataFrame) -> pd.Series:
    """Running best validation accuracy per (run, task); a failed trial keeps the previous best."""
    keys = [trials["run"], trials["task"]]
    return trials.groupby(keys)["val_accuracy"].cummax().groupby(keys).ffill()


def top_k_test_accuracy(trials: pd.DataFrame, k: int = TOP_K) -> float:
    """Mean test accuracy of the ``k`` best distinct architectures by validation accuracy (ties: earlier trial)."""
    ok = trials.dropna(subset=["val_accuracy"]).drop_duplicates("arch")
    return float(ok.sort_values("val_accuracy", ascending=False, kind="stable").head(k)["test_accuracy"].mean())


def run_stats(trials: pd.DataFrame) -> pd.DataFrame:
    """A row per (task, mode, run): ``opening``, ``best@N``, ``final_best``, ``top_test``, ``reach@F``
    (the task trial that first reached F of scratch's final best; NaN: never) and ``seconds@F``
    (the child seconds the run had spent on the task by then, that trial included), and the
    run's budget on the task: ``trials`` and ``child_seconds``."""
    trials = trials.assign(best=best_so_far(trials))
    scratch = trials[trials["mode"] == BASELINE]
    targets = scratch.groupby(["task", "run"])["val_accuracy"].max().groupby("task").mean()
    rows = []
    for (task, mode, run, seed), group in trials.groupby(["task", "mode", "run", "seed"]):
        best = group.set_index("task_trial")["best"]
        spent = group.set_index("task_trial")["seconds"].cumsum()
        row = {
            "task": task,
            "mode": mode,
            "run": run,
            "seed": seed,
            "trials": len(group),
            "child_seconds": spent.iloc[-1],
            "final_best": best.iloc[-1],
            "top_test": top_k_test_accuracy(group),
            "opening": group.loc[group["task_trial"] <= OPENING, "reward"].mean(),
        }
        row.update({f"best@{n}": best.get(n, math.nan) for n in CHECKPOINTS})
        for fraction in FRACTIONS:
            reached = best[best >= fraction * targets.get(task, math.nan)]
            row[f"reach@{fraction}"] = reached.index[0] if len(reached) else math.nan
            row[f"seconds@{fraction}"] = spent[reached.index[0]] if len(reached) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(values: pd.Series, digits: int) -> str:
    """``mean ± std`` over seeds (sample std); ``(k/n)`` when only k of the n seeds have a value."""
    present = values.dropna()
    if present.empty:
        return "—"
    text = f"{present.mean():.{digits}f}"
    if len(present) > 1:
        text += f" ± {present.std():.{digits}f}"
    return text + (f" ({len(present)}/{len(values)})" if len(present) < len(values) else "")


# The budget column that bounds each cost column of a run that never reached the target.
BUDGETS = {"reach": "trials", "seconds": "child_seconds"}


def censored_median(costs: pd.Series) -> float:
    """The median cost over seeds, a seed that never reached the target (NaN) counting as never
    (infinite): ``inf`` when half the seeds or more never did. Dropping those seeds instead
    would make a mode look faster the more of its seeds fail."""
    return float(costs.fillna(math.inf).median()) if len(costs) else math.nan


@dataclass(frozen=True)
class SpeedUp:
    """Scratch's median cost over a mode's (``censored_median``). ``bound`` is ``""`` (exact),
    ``"≥"`` (scratch's median never reached the target, so its budget stands in for its cost
    and the speed-up is at least ``value``) or ``"≤"`` (the mode's median never did); ``value``
    is NaN when neither median reached it."""

    value: float
    bound: str = ""

    def at_least(self, factor: float) -> bool:
        return self.value >= factor and self.bound != "≤"

    def __str__(self) -> str:
        if math.isinf(self.value):
            return "— (reused: 0 s)"
        return "—" if math.isnan(self.value) else f"{self.bound}{self.value:.2f}×"


def speed_up(scratch: pd.DataFrame, mode: pd.DataFrame, cost: str) -> SpeedUp:
    """``SpeedUp`` of ``mode``'s runs over ``scratch``'s (``run_stats`` rows) in ``cost`` (e.g. ``reach@0.99``)."""
    budget = BUDGETS[cost.split("@")[0]]
    ours, theirs = censored_median(mode[cost]), censored_median(scratch[cost])
    if math.isnan(ours) or math.isnan(theirs) or (math.isinf(ours) and math.isinf(theirs)):
        return SpeedUp(math.nan)
    bound = "≥" if math.isinf(theirs) else "≤" if math.isinf(ours) else ""
    if math.isinf(theirs):  # the budget is a lower bound on the cost of a seed that never got there
        theirs = censored_median(scratch[cost].fillna(scratch[budget]))
    if math.isinf(ours):
        ours = censored_median(mode[cost].fillna(mode[budget]))
    if ours == 0:  # reached on results reused from another run, which cost this one nothing
        return SpeedUp(math.inf if theirs > 0 else math.nan)
    return SpeedUp(theirs / ours, bound)


def _median_cell(costs: pd.Series, digits: int) -> str:
    """``censored_median`` of a cost over seeds; ``(k/n)`` when only k of the n seeds reached the target."""
    median = censored_median(costs)
    reached = int(costs.notna().sum())
    count = f" ({reached}/{len(costs)})" if reached < len(costs) else ""
    if math.isinf(median):
        return "not reached" + count
    if median == 0:
        return "0 (reused results)" + count
    return f"{median:.{digits if median >= 10 else max(digits, 1)}f}" + count  # 0.4 s, not "0"


def task_table(stats: pd.DataFrame, task: str) -> str:
    """The markdown table of one task: a row per mode."""
    rows = stats[stats["task"] == task]
    has_baseline = (rows["mode"] == BASELINE).any()
    checkpoints = [n for n in CHECKPOINTS if rows[f"best@{n}"].notna().any()]  # those some run reached
    header = ["mode", "seeds", f"mean reward, first {OPENING}", *(f"best val @{n}" for n in checkpoints)]
    for fraction in FRACTIONS:
        reach = f"{fraction:.0%}"
        header += [
            f"trials to {reach} of scratch",
            f"speed-up {reach}",
            f"child s to {reach}",
            f"compute speed-up {reach}",
        ]
    header.append(f"top-{TOP_K} test acc")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in sorted(rows["mode"].unique(), key=mode_sort_key):
        mine = rows[rows["mode"] == mode]
        cells = [mode, str(len(mine)), _cell(mine["opening"], 3), *(_cell(mine[f"best@{n}"], 3) for n in checkpoints)]
        for fraction in FRACTIONS:
            for column, digits in ((f"reach@{fraction}", 1), (f"seconds@{fraction}", 0)):
                if has_baseline:
                    baseline = rows[rows["mode"] == BASELINE]
                    cells += [_median_cell(mine[column], digits), str(speed_up(baseline, mine, column))]
                else:
                    cells += ["n/a (no scratch runs)", "—"]
        cells.append(_cell(mine["top_test"], 3))
        lines.append("| " + " | ".join(cells) + " |")
    few = [f"{mode} (n={count})" for mode, count in rows.groupby("mode").size().items() if count < MIN_SEEDS]
    if few:
        lines.append(
            f"\n*Fewer than {MIN_SEEDS} seeds for {', '.join(few)}: a mean, a std and a speed-up from so few "
            "runs are single observations, not evidence of a difference; run more seeds before concluding.*"
        )
    return "\n".join(lines)


def transfer_verdicts(trials: pd.DataFrame) -> list[str]:
    """One line per task that has transfer and scratch runs: did transfer help?

    Helped: every transfer seed's best validation accuracy at the budget (the fewest task
    trials any of these runs made) is above the median of scratch's seeds, with at least
    ``MIN_SEEDS`` seeds of each; otherwise "no clear difference". A strict rule on purpose:
    with 3 seeds a transfer seed below scratch's median means the two overlap.
    """
    trials = trials.assign(best=best_so_far(trials))
    lines = []
    for task, mine in trials.groupby("task"):
        for mode in sorted({m for m in mine["mode"].unique() if m.startswith("transfer")}, key=mode_sort_key):
            if not (mine["mode"] == BASELINE).any():
                continue
            runs = mine[mine["mode"].isin([mode, BASELINE])]
            budget = int(runs.groupby("run")["task_trial"].max().min())
            at_budget = runs[runs["task_trial"] == budget].groupby(["mode", "run"])["best"].last()
            ours, theirs = at_budget.get(mode, pd.Series(dtype=float)), at_budget.get(BASELINE, pd.Series(dtype=float))
            counts = f"n={len(ours)} {mode}, {len(theirs)} {BASELINE} seeds, {budget} trials"
            if min(len(ours), len(theirs)) < MIN_SEEDS:
                lines.append(f"- **{task}**, {mode}: too few seeds to tell ({counts}; {MIN_SEEDS} of each needed).")
            elif ours.min() > theirs.median():
                lines.append(
                    f"- **{task}**, {mode}: **transfer helped**: its worst seed {ours.min():.3f} is above "
                    f"scratch's median {theirs.median():.3f} ({counts})."
                )
            else:
                lines.append(
                    f"- **{task}**, {mode}: no clear difference: its worst seed {ours.min():.3f}, "
                    f"scratch's median {theirs.median():.3f} ({counts})."
                )
    return lines


def jobs_table(jobs: pd.DataFrame, trials: pd.DataFrame) -> str:
    """Every job by its label, with its seed, tasks, trial count, status (a failure's error, shortened)
    and, last, its folder."""
    counts = trials.groupby("run").size()
    lines = ["| run | tasks | trials | status | folder |", "|---|---|---|---|---|"]
    for job in jobs.sort_values(["mode", "seed", "run"], key=_mode_then_value).itertuples():
        status = f"{job.status}: {_shorten(job.error)}" if pd.notna(job.error) else job.status
        cells = [job.label, ", ".join(job.tasks), str(counts.get(job.run, 0)), status, f"`{job.run}`"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _mode_then_value(column: pd.Series) -> pd.Series:
    return column.map(mode_sort_key) if column.name == "mode" else column


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


LEGEND = f"""\
Numbers are mean ± sample std over seeds unless said otherwise, counted in each task's own trials.
`mean reward, first {OPENING}`: the average reward of the task's first {OPENING} trials, where the
search starts (failed children count with their failure reward).
`best val @N`: best validation accuracy after N trials of the task.
`trials to X% of scratch`: the median over seeds of the trials until the best validation
accuracy reaches X% of scratch's final best (the mean over scratch seeds of each seed's
best); `child s to X%`: the children's summed training seconds until then (compute, which
pruning and the choice of model change where trials do not; encoding, paid once per task
and encoder through the cache, is left out). A seed that never reached the target counts
as never, so the median is `not reached` when half the seeds or more never did; `(k/n)`:
only k of the n seeds reached it. A `speed-up` is scratch's median divided by this mode's:
`≥` when scratch's median never reached the target (its budget stands in for its cost,
so the speed-up is at least that), `≤` when this mode's never did.
`top-{TOP_K} test acc`: mean test accuracy of the {TOP_K} best distinct architectures by
validation accuracy. In the other columns `(k/n)`: only k of the n seeds have a value
(too few trials)."""
