"""How fast does the controller concentrate on a task's best choices? Tuning its learning settings cheaply.

    .venv/bin/python -m bench.controller_tuning outputs/bench/pruning/*    # about 5 min on one core

Training real children for every setting would take child-hours, so each task's reward
is a surrogate fitted to real children of that task: a ridge regression of validation
accuracy on one-hot choices (the decisions a child made), plus Gaussian noise of the
fit's residual size. The fit's best choice per decision is what a policy should learn.
The real PPO strategy (``make_strategy``, the search's own update) then searches all
tasks at once against the surrogate, and the benchmark records after every controller
step the probability the policy gives each task's best choices (averaged over decisions
the surrogate can tell apart) and the surrogate reward of what it sampled.

Only tasks in ``--tasks`` are fitted (the defaults are pre-training tasks of
``experiment=pretrain``: never tune on the study's held-out tasks). Results:
``bench/results/controller_tuning.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import runs
from mnms.executors.trial import has_metrics
from mnms.report.load import run_config
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import make_strategy, strategy_config
from mnms.utils.config import plain

RESULTS = runs.RESULTS / "controller_tuning.json"
TASKS = ("trec", "global-warming", "corporate-messaging")  # pre-training tasks only
# One setting changed at a time from the defaults, then the promising combinations.
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "std advantage": {"advantage": "std"},
    "lr 0.03": {"learning_rate": 0.03},
    "std, lr 0.03": {"advantage": "std", "learning_rate": 0.03},
    "std, lr 0.03, entropy 0.001": {"advantage": "std", "learning_rate": 0.03, "entropy_weight": 0.001},
    "std, lr 0.03, 8 epochs": {"advantage": "std", "learning_rate": 0.03, "ppo_epochs": 8},
    "std, lr 0.1": {"advantage": "std", "learning_rate": 0.1},
    "std, lr 0.1, entropy 0.001": {"advantage": "std", "learning_rate": 0.1, "entropy_weight": 0.001},
    "std, lr 0.1, emb lr 0.3": {"advantage": "std", "learning_rate": 0.1, "embedding_learning_rate": 0.3},
    "std, lr 0.03, emb lr 0.1": {"advantage": "std", "learning_rate": 0.03, "embedding_learning_rate": 0.1},
}
MIN_EFFECT = 0.01  # a decision whose best choice beats the others by less than this is a tie, not a target


@dataclass(frozen=True)
class Surrogate:
    """Ridge regression of reward on one-hot (decision, choice) features of one task's children."""

    space: SearchSpace
    columns: list[tuple[str, Any]]
    coef: np.ndarray
    intercept: float
    noise: float

    @classmethod
    def fit(cls, space: SearchSpace, decisions: Sequence[Mapping[str, Any]], rewards: Sequence[float]) -> Surrogate:
        columns = [(d.name, c) for d in space.decisions for c in d.choices]
        x = np.array([features(columns, arch) for arch in decisions])
        y = np.array(rewards)
        mean = y.mean()
        alpha = 1.0
        coef = np.linalg.solve(x.T @ x + alpha * np.eye(len(columns)), x.T @ (y - mean))
        noise = float(np.std(y - mean - x @ coef))
        return cls(space, columns, coef, float(mean), noise)

    def __call__(self, arch: Mapping[str, Any], rng: np.random.Generator) -> float:
        value = self.intercept + features(self.columns, arch) @ self.coef + rng.normal(0.0, self.noise)
        return float(np.clip(value, 0.0, 1.0))

    def best_choices(self) -> dict[str, str]:
        """Per decision, the choice with the largest effect, where it beats the runner-up by MIN_EFFECT."""
        best = {}
        for decision in self.space.decisions:
            effects = sorted(
                ((self.coef[self.columns.index((decision.name, c))], c) for c in decision.choices), reverse=True
            )
            if effects[0][0] - effects[1][0] >= MIN_EFFECT:
                best[decision.name] = str(effects[0][1])
        return best


def features(columns: list[tuple[str, Any]], arch: Mapping[str, Any]) -> np.ndarray:
    return np.array([float(name in arch and json.dumps(arch[name]) == json.dumps(c)) for name, c in columns])


def concentration(strategy: Any, task: str, best: Mapping[str, str]) -> float:
    """The policy's mean probability of the best choice, over the decisions with a clear best."""
    table = strategy.choice_probabilities(task)
    return statistics.fmean(table[name][choice] for name, choice in best.items())


def simulate(
    space: SearchSpace,
    surrogates: Mapping[str, Surrogate],
    policy: Mapping[str, Any],
    seed: int,
    trials: int,
    batch: int,
) -> dict[str, Any]:
    """One multitask PPO search against the surrogates, round robin, ``trials`` per task."""
    config = strategy_config({"kind": "ppo", "policy": dict(policy)})
    strategy = make_strategy(config, space, list(surrogates), seed)
    rng = np.random.default_rng(seed)
    best = {task: s.best_choices() for task, s in surrogates.items()}
    curve: dict[str, list[dict[str, float]]] = {task: [] for task in surrogates}
    for step in range(trials // batch):
        for task, surrogate in surrogates.items():
            proposals = strategy.propose(task, batch)
            rewards = [surrogate(p.arch, rng) for p in proposals]
            strategy.observe(task, proposals, rewards)
            curve[task].append(
                {
                    "trials": (step + 1) * batch,
                    "p_best": concentration(strategy, task, best[task]),
                    "reward": statistics.fmean(rewards),
                }
            )
    return curve


def load_records(run_dirs: Sequence[Path], tasks: Sequence[str]) -> tuple[SearchSpace, dict[str, list]]:
    """The search space of the runs (they must agree) and each task's finished trials."""
    spaces, rows = {}, {task: [] for task in tasks}
    for run in run_dirs:
        space = SearchSpace.from_config(plain(run_config(run).search_space))
        spaces[space.signature()] = space
        for row in read_trials(run):
            if row.task in rows and has_metrics(row):
                rows[row.task].append(row)
    if len(spaces) != 1:
        raise SystemExit(f"the runs searched {len(spaces)} different spaces; give runs of one space")
    return next(iter(spaces.values())), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="search run dirs whose children fit the surrogates")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40, help="trials per task")
    parser.add_argument("--batch", type=int, default=4, help="children per controller step")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()

    space, records = load_records(args.runs, args.tasks)
    surrogates = {
        task: Surrogate.fit(space, [r.decisions for r in rows], [r.reward for r in rows])
        for task, rows in records.items()
    }
    fits = {
        task: {"children": len(records[task]), "noise": s.noise, "best_choices": s.best_choices()}
        for task, s in surrogates.items()
    }
    results = {}
    for name, seed in itertools.product(args.settings, range(args.seeds)):
        curve = simulate(space, surrogates, SETTINGS[name], seed, args.trials, args.batch)
        results.setdefault(name, []).append(curve)
        last = {task: c[-1]["p_best"] for task, c in curve.items()}
        print(f"{name:32s} seed {seed}: p(best) after {args.trials} trials per task {last}", flush=True)
    summary = summarise(results, args.trials, args.batch)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python -m bench.controller_tuning " + " ".join(map(str, args.runs)),
                "tasks": args.tasks,
                "seeds": args.seeds,
                "trials_per_task": args.trials,
                "batch": args.batch,
                "surrogates": fits,
                "settings": {n: SETTINGS[n] for n in args.settings},
                "summary": summary,
                "curves": results,
            },
            indent=1,
        )
        + "\n"
    )
    for name, row in summary.items():
        print(name, row)


def summarise(results: Mapping[str, list], trials: int, batch: int) -> dict[str, dict[str, float]]:
    """Per setting, medians over seeds of the mean over tasks: p(best) at 8, 16 and the last trial count,
    and the mean surrogate reward of the last quarter of the trials."""
    summary = {}
    marks = sorted(mark for mark in {8, 16, trials} if mark <= trials)
    for name, curves in results.items():
        row = {}
        for mark in marks:
            step = mark // batch - 1
            row[f"p_best@{mark}"] = statistics.median(
                statistics.fmean(c[step]["p_best"] for c in curve.values()) for curve in curves
            )
        tail = max(1, (trials // batch) // 4)
        row["reward_last_quarter"] = statistics.median(
            statistics.fmean(p["reward"] for c in curve.values() for p in c[-tail:]) for curve in curves
        )
        summary[name] = row
    return summary


if __name__ == "__main__":
    main()
