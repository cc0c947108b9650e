"""Which of a search's architectures a child trains: ``mode=child child.from=<run dir>`` and ``child.select``.

``child.select`` is the one way to say it, so a new way to choose (the cheapest within
a margin of the best, the top k for an ensemble) is a field of ``Selection`` rather
than a parallel key; today it picks by rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mnms.executors.trial import finished
from mnms.search.records import TrialRecord, ranked_architectures, read_trials
from mnms.utils.config import ConfigError, check, from_keyword_mapping, is_int, to_keyword_mapping
from mnms.utils.io import RunDir


@dataclass(frozen=True)
class Selection:
    """``child.select``: of the run's distinct architectures for the task, best validation reward first,
    the ``rank``-th (1: the one ``summary.json`` names)."""

    section: ClassVar[str] = "child.select"

    rank: int = 1

    def __post_init__(self) -> None:
        check(self, "rank", is_int(self.rank) and self.rank >= 1, "an integer >= 1 (1 = the best architecture)")

    def pick(self, run_dir: Path, task: str) -> TrialRecord:
        """The trial of the search in ``run_dir`` whose architecture this selects for ``task``."""
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
        if self.rank > len(ranked):
            raise ConfigError(
                f"child.select.rank={self.rank} but the search in {run_dir} found {len(ranked)} distinct "
                f"architecture(s) with a finished trial for {task!r}: use child.select.rank from 1 to {len(ranked)}"
            )
        return ranked[self.rank - 1]


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
