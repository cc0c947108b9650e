"""Which of a search's architectures a child trains: ``mode=child child.from=<run dir>`` and ``child.select``.

``child.select`` is the one way to say it, so a new way to choose (the top k for an
ensemble) is a field of ``Selection`` rather than a parallel key; today it picks by
rank, or the cheapest within a margin of the best accuracy (``within``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mnms.executors.trial import finished
from mnms.search.cost import MEASURES, cost_of
from mnms.search.records import TrialRecord, ranked_architectures, read_trials
from mnms.utils.config import ConfigError, check, from_keyword_mapping, is_int, is_number, to_keyword_mapping
from mnms.utils.io import RunDir


@dataclass(frozen=True)
class Selection:
    """``child.select``: of the run's distinct architectures for the task, best validation reward first,
    the ``rank``-th (1: the one ``summary.json`` names); or, with ``within``, the cheapest (in
    ``cost``: flops or seconds) whose validation accuracy is at most ``within`` below the best one's."""

    section: ClassVar[str] = "child.select"

    rank: int = 1
    within: float | None = None  # e.g. 0.01: the cheapest architecture within 1 point of the best accuracy
    cost: str = "flops"  # what "cheapest" means with within: flops (counted) | seconds (measured)

    def __post_init__(self) -> None:
        check(self, "rank", is_int(self.rank) and self.rank >= 1, "an integer >= 1 (1 = the best architecture)")
        check(
            self,
            "within",
            self.within is None or (is_number(self.within) and 0 <= self.within <= 1),
            "null (select by rank) or a number of accuracy in [0, 1] (0.01 = one point)",
        )
        check(self, "cost", self.cost in MEASURES, f"one of {list(MEASURES)}")
        if self.within is not None and self.rank != 1:
            raise ConfigError(
                f"child.select.rank={self.rank} and child.select.within={self.within} both choose an architecture: "
                "give one of them"
            )

    def pick(self, run_dir: Path, task: str) -> tuple[TrialRecord, int]:
        """The trial of the search in ``run_dir`` whose architecture this selects for ``task``, and its rank
        among the task's distinct architectures by validation reward (1: the best), however it was selected."""
        if not run_dir.is_dir():
            raise ConfigError(
                f"child.from={str(run_dir)!r} does not exist: give the run dir of a search (it prints it at the end; "
                "outputs/multitask/<time>, or a multirun job's folder)"
            )
        try:
            records = read_trials(run_dir)
        except FileNotFoundError:
            raise ConfigError(
                f"child.from={str(run_dir)!r} holds no {RunDir.TRIALS}: give the run dir of a search "
                "(outputs/multitask/<time>, or a multirun job's folder)"
            ) from None
        ranked = ranked_architectures(records, task)
        if not ranked:
            found = sorted({row.task for row in records if finished(row)})
            raise ConfigError(
                f"child.from={str(run_dir)!r} has no finished trial for task={task!r}; the tasks it has a finished "
                f"trial for are {found}: set task= to one of them, or give the run dir of a search of {task!r}"
            )
        if self.within is not None:
            cheapest = self._cheapest(ranked, run_dir)
            return cheapest, 1 + ranked.index(cheapest)
        if self.rank > len(ranked):
            raise ConfigError(
                f"child.select.rank={self.rank} but the search in {run_dir} found {len(ranked)} distinct "
                f"architecture(s) with a finished trial for {task!r}: use child.select.rank from 1 to {len(ranked)}"
            )
        return ranked[self.rank - 1], self.rank

    def _cheapest(self, ranked: list[TrialRecord], run_dir: Path) -> TrialRecord:
        """The cheapest of ``ranked`` within ``within`` of the best validation accuracy (ties: the better ranked)."""
        bar = max(row.metrics["val_accuracy"] for row in ranked) - self.within
        close = [row for row in ranked if row.metrics["val_accuracy"] >= bar]
        try:
            return min(close, key=lambda row: cost_of(row.metrics, self.cost, "child.select.cost"))
        except ValueError as error:
            raise ConfigError(f"child.from={str(run_dir)!r}: {error}") from None


@dataclass(frozen=True)
class ChildSourceConfig:
    """``mode=child``'s own keys of the ``child`` section (``source`` is the YAML key ``from``).

    ``source``: a search run dir whose selected architecture (``select``) trains, instead of
    ``child.arch`` (whose command-line fields still override it); ``save``: write the
    trained model folder.
    """

    section: ClassVar[str] = "child"

    source: str | None = None
    select: Selection = field(default_factory=Selection)
    save: bool = True

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ChildSourceConfig:
        """From the ``child`` section (its ``arch`` is ``child.arch``'s, not this config's)."""
        return from_keyword_mapping(cls, {key: value for key, value in dict(values).items() if key != "arch"})

    def to_mapping(self) -> dict[str, Any]:
        """The keys of the ``child`` section for this config (``source`` as ``from``)."""
        return to_keyword_mapping(self)
