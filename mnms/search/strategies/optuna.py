"""The Optuna baseline: TPE proposing architectures over the same space and executor as the controller.

Optuna is driven with ask/tell (no Hydra sweeper), so the search loop, its records,
checkpoints and W&B mirror are exactly those of the controller runs.  Each task has
its own study, so a multitask run is several independent single-task TPE searches.
Conditional decisions are define-by-run suggestions: a decision is only suggested
when its condition holds for the choices already made, so TPE never sees (or
models) a value the child would ignore.

Resume: an Optuna study cannot be pickled into our checkpoint, so ``state_dict``
holds what determines TPE's next proposals -- each task's told trials (params and
value, in order) and the two random states of its sampler (TPE's own and the
random sampler it uses for the startup trials).  ``load_state_dict`` replays the
trials into a fresh study with a fresh sampler and restores both random states.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import ExperimentalWarning

from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Proposal, Strategy
from mnms.utils.config import ConfigError, check, is_int

# Optuna logs one INFO line per told trial; trials.jsonl and the progress bar already say it.
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class OptunaConfig:
    """The ``strategy`` section of ``strategy=optuna``: ``TPESampler`` settings.

    ``multivariate`` + ``group`` model decisions jointly and split the conditional
    space into the groups of decisions that occur together, which is what Optuna
    recommends for define-by-run spaces like ours.
    """

    section: ClassVar[str] = "strategy"

    kind: str
    n_startup_trials: int = 10  # random proposals per task before TPE models anything
    n_ei_candidates: int = 24  # candidates scored by expected improvement per suggestion
    multivariate: bool = True  # model decisions jointly ...
    group: bool = True  # ... within the groups of decisions that occur together (conditional spaces)
    constant_liar: bool = True  # a batch's pending trials count as bad, so a batch spreads out

    def __post_init__(self) -> None:
        check(self, "n_startup_trials", is_int(self.n_startup_trials) and self.n_startup_trials >= 0, "an integer >= 0")
        check(self, "n_ei_candidates", is_int(self.n_ei_candidates) and self.n_ei_candidates >= 1, "an integer >= 1")
        if self.group and not self.multivariate:
            raise ConfigError(f"{self.section}.group=true needs {self.section}.multivariate=true; set both or neither")


def task_seed(seed: int, task: str) -> int:
    """A per-task sampler seed: tasks get different random streams, stable under reordering of ``tasks``."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{task}".encode()).digest()[:4], "little")


def _random_states(sampler: optuna.samplers.TPESampler) -> dict[str, np.random.RandomState]:
    """TPE's own random state and that of its startup ``RandomSampler``.

    Private attributes: Optuna has no public API for them.  optuna is pinned, and
    the exact-resume test fails loudly should they move.
    """
    return {"tpe": sampler._rng.rng, "startup": sampler._random_sampler._rng.rng}


def _plain_rng_state(rng: np.random.RandomState) -> tuple:
    name, keys, pos, has_gauss, cached = rng.get_state()
    return (name, keys.tolist(), int(pos), int(has_gauss), float(cached))


class OptunaStrategy(Strategy):
    """One TPE study per task; ``propose`` asks, ``observe`` tells."""

    Config = OptunaConfig
    asynchronous = False  # each observe() tells exactly the last proposals (see propose)

    def __init__(self, space: SearchSpace, task_names: Sequence[str], config: OptunaConfig, seed: int) -> None:
        self.space, self.config, self.seed = space, config, seed
        self.distributions = {d.name: CategoricalDistribution(list(d.choices)) for d in space.decisions}
        self.studies = {task: self._new_study(task) for task in task_names}
        self.told: dict[str, list[dict[str, Any]]] = {task: [] for task in task_names}
        self.pending: dict[str, list[tuple[Proposal, optuna.Trial]]] = {}  # asked, not yet told

    @classmethod
    def build(cls, config: OptunaConfig, space: SearchSpace, tasks: Sequence[str], seed: int) -> OptunaStrategy:
        return cls(space, tasks, config, seed)

    def _new_study(self, task: str) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # `group` is marked experimental
            sampler = optuna.samplers.TPESampler(
                n_startup_trials=self.config.n_startup_trials,
                n_ei_candidates=self.config.n_ei_candidates,
                multivariate=self.config.multivariate,
                group=self.config.group,
                constant_liar=self.config.constant_liar,
                seed=task_seed(self.seed, task),
            )
        return optuna.create_study(direction="maximize", sampler=sampler, study_name=task)

    def _study(self, task: str) -> optuna.Study:
        if task not in self.studies:
            raise KeyError(f"unknown task {task!r}; this Optuna strategy was built for {sorted(self.studies)}")
        return self.studies[task]

    def propose(self, task: str, n: int) -> list[Proposal]:
        """Ask ``n`` trials; they stay pending until observed or discarded (proposals of a step may be drawn
        in several calls when the search redraws repeats)."""
        study = self._study(task)
        pending = self.pending.setdefault(task, [])
        proposals = []
        for _ in range(n):
            trial = study.ask()
            arch: dict[str, Any] = {}
            for decision in self.space.decisions:
                if decision.active(arch):  # define-by-run: inactive decisions are never suggested
                    arch[decision.name] = trial.suggest_categorical(decision.name, list(decision.choices))
            proposal = Proposal(arch, 0.0)
            pending.append((proposal, trial))
            proposals.append(proposal)
        return proposals

    def _pending_trials(self, task: str, proposals: list[Proposal]) -> list[optuna.Trial]:
        """The pending trials of ``proposals`` (the very objects ``propose`` returned), removed from pending."""
        pending = self.pending.get(task, [])
        by_identity = {id(asked): trial for asked, trial in pending}
        for proposal in proposals:
            if id(proposal) not in by_identity:
                raise ValueError(
                    f"a proposal for {task!r} that is not pending: {proposal.arch}; observe what propose gave"
                )
        taken = {id(proposal) for proposal in proposals}
        self.pending[task] = [(asked, trial) for asked, trial in pending if id(asked) not in taken]
        return [by_identity[id(proposal)] for proposal in proposals]

    def discard(self, task: str, proposals: list[Proposal]) -> None:
        """Tell TPE the trials failed: a failed trial is not modelled, so a repeat teaches it nothing."""
        study = self._study(task)
        for trial in self._pending_trials(task, proposals):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def observe(self, task: str, proposals: list[Proposal], rewards: list[float]) -> dict[str, float]:
        if len(proposals) != len(rewards):
            raise ValueError(f"observe({task!r}) got {len(proposals)} proposals and {len(rewards)} rewards")
        if not all(math.isfinite(r) for r in rewards):
            raise ValueError(f"rewards must be finite (Optuna would record a NaN as a failed trial), got {rewards}")
        left = len(self.pending.get(task, [])) - len(proposals)
        if left > 0:
            raise ValueError(
                f"{left} proposals for {task!r} would still be pending after observe; "
                "observe or discard every proposal of a step"
            )
        trials = self._pending_trials(task, proposals)
        study = self._study(task)
        for trial, proposal, reward in zip(trials, proposals, rewards):
            study.tell(trial, float(reward))
            self.told[task].append({"params": dict(proposal.arch), "value": float(reward)})
        return {"reward_mean": sum(rewards) / len(rewards), "best_so_far": study.best_value}

    def choice_probabilities(self, task: str) -> dict[str, dict[str, float]]:
        """How often TPE chose each choice when the decision was made (uniform before any trial).

        TPE has no explicit policy to report; its choice frequencies so far are the
        closest analogue of the controller's probabilities.
        """
        self._study(task)
        table = {}
        for decision in self.space.decisions:
            made = [decision.index(t["params"][decision.name]) for t in self.told[task] if decision.name in t["params"]]
            table[decision.name] = {
                str(c): made.count(i) / len(made) if made else 1 / len(decision.choices)
                for i, c in enumerate(decision.choices)
            }
        return table

    def state_dict(self) -> dict[str, Any]:
        if any(self.pending.values()):
            raise RuntimeError("cannot snapshot the Optuna strategy between propose() and observe()")
        return {
            "told": {task: [dict(t) for t in told] for task, told in self.told.items()},
            "rng": {
                task: {name: _plain_rng_state(rng) for name, rng in _random_states(study.sampler).items()}
                for task, study in self.studies.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["told"]) != set(self.studies):
            raise ValueError(
                f"the state is for tasks {sorted(state['told'])}, this strategy has {sorted(self.studies)}"
            )
        self.pending.clear()
        for task in self.studies:
            study = self.studies[task] = self._new_study(task)
            for told in state["told"][task]:
                distributions = {name: self.distributions[name] for name in told["params"]}
                study.add_trial(
                    optuna.trial.create_trial(params=told["params"], distributions=distributions, value=told["value"])
                )
            for name, rng in _random_states(study.sampler).items():
                rng.set_state(state["rng"][task][name])
            self.told[task] = [dict(t) for t in state["told"][task]]
