"""Score the tabular benchmark's searches: trials to a task's top-3, regret curves, specialisation, repeats.

    .venv/bin/python -m bench.tabular_report [--results bench/results/tabular-search.json.gz] [--figure docs/img/...]

Reads what ``python -m bench.tabular search`` recorded and the table it searched
(``bench/results/tabular.json.gz``). Every score uses the table's mean validation
accuracy over its child seeds as an architecture's true quality; a search only saw
the one seed each of its trials drew.

- trials to top-k: the first of a task's trials (1-based, of its first ``--trials``)
  whose architecture is one of the task's k best (with any that tie the k-th: three of
  is-spanish's architectures share its best mean); a search that never gets there
  counts ``trials + 1`` (so a median above ``trials`` reads "not reached").
- regret after t trials: the task's best mean minus the mean of the architecture the
  search would pick then (its best observed reward so far), in accuracy points.
- specialisation: the controller's most probable architecture per task within 1 point
  of the task's best.
- repeats: per controller step of a task, the share of the architectures the strategy
  proposed (its first draw of each slot, before any redraw) that the task had already
  tried or the step already held.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.runs import RESULTS, ROOT
from bench.tabular import TABLE, TRANSFER, Benchmark, load_results
from mnms.search.table import ResultTable

RESULTS_FILE = RESULTS / "tabular-search.json.gz"


def trials_to(tried: Sequence[str], targets: set[str], trials: int) -> int:
    """1-based index of the first of ``tried[:trials]`` in ``targets``; ``trials + 1`` if none is."""
    return next((i for i, key in enumerate(tried[:trials], start=1) if key in targets), trials + 1)


def regret_curve(tried: Sequence[str], rewards: Sequence[float], means: dict[str, float], trials: int) -> list[float]:
    """Regret (points) of the incumbent -- the best observed reward so far -- after each of the first ``trials``."""
    best, curve, incumbent, seen = max(means.values()), [], None, -math.inf
    for key, reward in zip(tried[:trials], rewards[:trials]):
        if reward > seen:
            incumbent, seen = key, reward
        curve.append(100 * (best - means[incumbent]))
    curve += [curve[-1]] * (trials - len(curve)) if curve else [100 * best] * trials
    return curve


def top(table: ResultTable, task: str, k: int) -> set[str]:
    """The task's ``k`` best architectures by mean validation accuracy, and any that tie the ``k``-th."""
    means = table.mean_val(task)
    bar = means[table.ranked(task)[k - 1]]
    return {key for key, mean in means.items() if mean >= bar}


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return q1, q2, q3


class Scores:
    """Every score of one results file, per setting, task and search seed."""

    def __init__(self, table: ResultTable, results: dict[str, Any], trials: int) -> None:
        self.table, self.trials = table, trials
        self.results = results[str(trials)]
        self.means = {task: table.mean_val(task) for task in table.tasks}
        self.top = {task: {k: top(table, task, k) for k in (1, 2, 3)} for task in table.tasks}

    @property
    def settings(self) -> list[str]:
        """The multitask searches' settings (not ``transfer``, scored by ``transfer_scores``)."""
        return [setting for setting in self.results if setting != TRANSFER]

    @property
    def points(self) -> list[int]:
        """The trial counts the tables show regret at."""
        return [t for t in (10, 25) if t < self.trials] + [self.trials]

    def seeds(self, setting: str) -> list[dict[str, Any]]:
        return list(self.results[setting].values())

    def to_top(self, setting: str, task: str, k: int = 3) -> list[int]:
        return [trials_to(s["tasks"][task]["tried"], self.top[task][k], self.trials) for s in self.seeds(setting)]

    def regret(self, setting: str, tasks: Sequence[str]) -> list[list[float]]:
        """Per seed, the regret curve averaged over ``tasks``."""
        curves = []
        for found in self.seeds(setting):
            per_task = [
                regret_curve(found["tasks"][t]["tried"], found["tasks"][t]["rewards"], self.means[t], self.trials)
                for t in tasks
            ]
            curves.append([statistics.fmean(values) for values in zip(*per_task)])
        return curves

    def specialised(self, setting: str, task: str) -> float | None:
        """Share of seeds whose final most probable architecture for ``task`` is within 1 point of its best."""
        picks = [s["tasks"][task]["most_probable"] for s in self.seeds(setting)]
        if picks[0] is None:
            return None
        best = max(self.means[task].values())
        return sum(self.means[task][pick] >= best - 0.01 for pick in picks) / len(picks)

    def repeat_fraction(self, setting: str, task: str) -> list[float]:
        """Per controller step of ``task`` (its 1st, 2nd, ...), the median share of its proposals that repeated."""
        per_step: defaultdict[int, list[float]] = defaultdict(list)
        for found in self.seeds(setting):
            steps = [(proposed, repeats) for _, name, proposed, repeats in found["draws"] if name == task]
            for index, (proposed, repeats) in enumerate(steps):
                per_step[index].append(repeats / proposed)
        return [statistics.median(per_step[i]) for i in sorted(per_step)]

    def repeats_while_unfound(self, setting: str) -> list[float]:
        """Per controller step of a task, the mean share of its proposals that repeated, over the (seed, task)
        pairs whose best architecture (with ties) no earlier trial of the task had found: the issue's measure of
        a policy that stops searching too soon."""
        per_step: defaultdict[int, list[float]] = defaultdict(list)
        for found in self.seeds(setting):
            for task in self.table.tasks:
                tried, before = found["tasks"][task]["tried"], 0
                for index, (_, _, proposed, repeats) in enumerate(s for s in found["draws"] if s[1] == task):
                    if not any(key in self.top[task][1] for key in tried[:before]):
                        per_step[index].append(repeats / proposed)
                    before += proposed
        return [statistics.fmean(per_step[i]) for i in sorted(per_step)]


def overall(scores: Scores, bench: Benchmark) -> list[str]:
    """One line per setting: the median over tasks of each task's median trials to top-3, and mean regret."""
    points = scores.points
    lines = [
        "| setting | tasks | trials to top-3 (median of task medians) | "
        + " | ".join(f"regret@{t}" for t in points)
        + " |"
    ]
    lines.append("|---|---|---|" + "---|" * len(points))
    for setting in scores.settings:
        for label, tasks in (("train", bench.train), ("held out", bench.held_out)):
            medians = [statistics.median(scores.to_top(setting, task)) for task in tasks]
            curves = scores.regret(setting, tasks)
            at = [statistics.median(curve[t - 1] for curve in curves) for t in points]
            cells = [f"{statistics.median(medians):.1f}", *(f"{value:.2f}" for value in at)]
            lines.append(f"| {setting} | {label} | " + " | ".join(cells) + " |")
    return lines


def targets(scores: Scores, bench: Benchmark, learner: str = "ppo") -> list[str]:
    """The issue's targets for ``learner`` on the held-out tasks, each with what it scored."""
    held_out = bench.held_out
    median_to_top = {s: {t: statistics.median(scores.to_top(s, t)) for t in held_out} for s in scores.settings}
    if learner not in median_to_top:
        return []
    mine = median_to_top[learner]
    lines = []
    for baseline, better, wanted in (("random", float.__lt__, 0.75), ("optuna", float.__le__, 0.5)):
        if baseline in median_to_top:
            wins = [t for t in held_out if better(float(mine[t]), float(median_to_top[baseline][t]))]
            verdict = "met" if len(wins) >= wanted * len(held_out) else "missed"
            relation = "fewer trials than" if baseline == "random" else "no more trials than"
            lines.append(
                f"- {learner} needs {relation} {baseline} to a top-3 architecture on {len(wins)} of "
                f"{len(held_out)} held-out tasks ({', '.join(wins) or 'none'}; target {wanted:.0%}): {verdict}"
            )
    tasks = scores.table.tasks
    shares = [scores.specialised(learner, t) for t in tasks]
    if shares[0] is not None:
        per_seed = [
            sum(
                scores.means[t][found["tasks"][t]["most_probable"]] >= max(scores.means[t].values()) - 0.01
                for t in tasks
            )
            / len(tasks)
            for found in scores.seeds(learner)
        ]
        share = statistics.median(per_seed)
        lines.append(
            f"- {learner}'s most probable architecture is within 1 point of the task's best on a median "
            f"{share:.0%} of the {len(tasks)} tasks per seed (target 80%): {'met' if share >= 0.8 else 'missed'}"
        )
    fractions = scores.repeats_while_unfound(learner)
    step, most = max(enumerate(fractions[:6], start=1), key=lambda item: item[1])
    lines.append(
        f"- while a task's best is unfound, {learner}'s proposals repeat what the task tried at most {most:.2f} of a "
        f"step (its step {step}; target: not most of a batch): {'met' if most <= 0.5 else 'missed'}"
    )
    return lines


def transfer_lines(scores: Scores, bench: Benchmark) -> list[str]:
    """Transfer on the table: per held-out task and mode, trials to one of the task's top 1% (median [IQR])."""
    if TRANSFER not in scores.results:
        return []
    seeds = list(scores.results[TRANSFER].values())
    modes = list(seeds[0])
    transfers = [mode for mode in modes if mode.startswith("transfer")]
    k = max(1, math.ceil(0.01 * scores.table.space.size()))
    lines = [
        f"Transfer ({len(seeds)} seeds): trials (of {scores.trials}) to one of a held-out task's top 1% "
        f"({k} architectures, and any that tie the {k}-th), median [IQR]; '>' = not reached:",
        "",
        "| task | " + " | ".join([*modes, *(f"scratch / {mode}" for mode in transfers)]) + " |",
        "|---|" + "---|" * (len(modes) + len(transfers)),
    ]
    fast = dict.fromkeys(transfers, 0)
    for task in bench.held_out:
        targets = top(scores.table, task, k)
        medians, cells = {}, []
        for mode in modes:
            values = [trials_to(found[mode][task]["tried"], targets, scores.trials) for found in seeds]
            q1, medians[mode], q3 = quartiles(values)
            shown = f">{scores.trials}" if medians[mode] > scores.trials else f"{medians[mode]:.0f}"
            cells.append(f"{shown} [{q1:.0f}-{q3:.0f}]")
        for mode in transfers:
            ratio = medians["scratch"] / medians[mode]
            fast[mode] += ratio >= 5
            cells.append(f"{ratio:.1f}x")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("")
    for mode in transfers:
        verdict = "met" if fast[mode] > len(bench.held_out) / 2 else "missed"
        lines.append(
            f"- {mode} needs 5x fewer trials than scratch on {fast[mode]} of {len(bench.held_out)} held-out tasks "
            f"(target: most): {verdict}"
        )
    return lines


def markdown(scores: Scores, bench: Benchmark) -> str:
    """The tables docs/benchmarks.md shows."""
    lines = [
        *targets(scores, bench),
        "",
        *overall(scores, bench),
        "",
        f"Trials (of {scores.trials}) to reach one of a task's top-3, median over seeds [IQR]; '>' = not reached:",
        "",
    ]
    header = ["task", *scores.settings]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in [*bench.train, *bench.held_out]:
        cells = []
        for setting in scores.settings:
            q1, q2, q3 = quartiles(scores.to_top(setting, task))
            shown = f">{scores.trials}" if q2 > scores.trials else f"{q2:.0f}"
            cells.append(f"{shown} [{q1:.0f}-{q3:.0f}]")
        mark = " (held out)" if task in bench.held_out else ""
        lines.append(f"| {task}{mark} | " + " | ".join(cells) + " |")
    after = " / ".join(map(str, scores.points))
    lines += ["", f"Regret (points) after {after} trials, mean over held-out tasks, median over seeds:", ""]
    lines += ["| setting | " + " | ".join(map(str, scores.points)) + " |", "|---|" + "---|" * len(scores.points)]
    for setting in scores.settings:
        curves = scores.regret(setting, bench.held_out)
        at = [statistics.median(curve[t - 1] for curve in curves) for t in scores.points]
        lines.append(f"| {setting} | " + " | ".join(f"{value:.2f}" for value in at) + " |")
    lines += ["", "Specialisation: share of seeds whose most probable architecture is within 1 point of the best:", ""]
    learners = [s for s in scores.settings if scores.specialised(s, bench.train[0]) is not None]
    lines += ["| task | " + " | ".join(learners) + " |", "|---|" + "---|" * len(learners)]
    for task in [*bench.train, *bench.held_out]:
        lines.append(f"| {task} | " + " | ".join(f"{scores.specialised(s, task):.2f}" for s in learners) + " |")
    lines += ["", "Repeat fraction of the proposals per controller step (median over seeds, mean over tasks):", ""]
    lines += ["| setting | steps 1-2 | 3-4 | 5-6 | 7-8 |", "|---|---|---|---|---|"]
    for setting in scores.settings:
        per_task = [scores.repeat_fraction(setting, task) for task in scores.table.tasks]
        cells = []
        for first in (0, 2, 4, 6):
            values = [v for fractions in per_task for v in fractions[first : first + 2]]
            cells.append(f"{statistics.fmean(values):.2f}" if values else "-")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", "The same while the task's best architecture is still unfound (mean over seeds and tasks):", ""]
    lines += ["| setting | step 2 | 3 | 4 | 5 | 6 |", "|---|---|---|---|---|---|"]
    for setting in scores.settings:
        fractions = scores.repeats_while_unfound(setting)[1:6]
        lines.append(f"| {setting} | " + " | ".join(f"{value:.2f}" for value in fractions) + " |")
    transfer = transfer_lines(scores, bench)
    return "\n".join([*lines, *([""] + transfer if transfer else [])])


def figure(scores: Scores, tasks: Sequence[str], path: Path) -> None:
    """Regret curves on ``tasks`` (median and interquartile band over seeds) of every setting, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = range(1, scores.trials + 1)
    for setting in scores.settings:
        bands = [quartiles(values) for values in zip(*scores.regret(setting, tasks))]
        ax.plot(steps, [b[1] for b in bands], label=setting)
        ax.fill_between(steps, [b[0] for b in bands], [b[2] for b in bands], alpha=0.2)
    ax.set(xlabel="trials per task", ylabel="regret (accuracy points)", yscale="log")
    ax.set_title(f"Held-out tasks of the tabular benchmark, {len(scores.seeds(scores.settings[0]))} seeds")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_FILE)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "tabular-regret.png")
    args = parser.parse_args()
    bench = Benchmark.load()
    table = ResultTable.load(TABLE)
    scores = Scores(table, load_results(args.results, table), args.trials)
    print(markdown(scores, bench))
    figure(scores, bench.held_out, args.figure)


if __name__ == "__main__":
    main()
