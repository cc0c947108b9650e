"""A search from plain configs: what ``mode=search`` builds from the Hydra config, and benches and tests by hand.

``SearchJob`` holds the validated sections a search is made of, checks how they fit
together, derives the resume signature from them (``mnms.search.resume``) and builds
the ``Search``, so no caller assembles a signature or a ``Search`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.tasks import Task
from mnms.executors.base import Executor, SequentialExecutor
from mnms.executors.runner import ChildRunner
from mnms.search.config import SearchConfig
from mnms.search.loop import Search
from mnms.search.resume import signature
from mnms.search.space import SearchSpace
from mnms.search.strategies import Strategy, make_strategy, strategy_config
from mnms.tracking import Tracker


@dataclass(frozen=True)
class SearchJob:
    """Everything a search is: its tasks, space, strategy and budget, and every child's defaults and budget.

    ``strategy`` is the ``strategy`` section's dataclass (``strategy_config``), ``child``
    the architecture every field the space leaves out takes, ``encoders`` the
    ``encoders`` section, ``transfer`` the transfer section of a search that starts
    from a pre-trained controller (None otherwise).
    """

    tasks: Mapping[str, Task]
    space: SearchSpace
    cache_dir: str | Path  # the feature cache (paths.cache_dir)
    strategy: Any = field(default_factory=lambda: strategy_config({"kind": "ppo"}))
    search: SearchConfig = field(default_factory=SearchConfig)
    trainer: ChildTrainerConfig = field(default_factory=ChildTrainerConfig)
    child: Architecture = field(default_factory=Architecture)
    encoders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 0
    transfer: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a search needs at least one task")
        self.check(self.space, self.child, self.search, self.trainer)

    @staticmethod
    def check(space: SearchSpace, child: Architecture, search: SearchConfig, trainer: ChildTrainerConfig) -> None:
        """Refuse sections that do not fit together: a choice the child defaults cannot build, a pruner
        that could never stop a child with ``trainer``'s budget."""
        space.check_buildable(child.to_dict())
        search.pruning.check(trainer)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def signature(self) -> dict[str, Any]:
        """What a resume of this search must share with it (``mnms.search.resume.signature``)."""
        return signature(
            tasks=self.task_names,
            seed=self.seed,
            space=self.space,
            search=self.search,
            strategy=self.strategy,
            child=self.child,
            trainer=self.trainer,
            encoders=self.encoders,
            examples={name: {split: len(data) for split, data in t.splits.items()} for name, t in self.tasks.items()},
            transfer=self.transfer,
        )

    def runner(self) -> ChildRunner:
        """What trains this search's children, here or in a worker."""
        return ChildRunner(dict(self.tasks), self.trainer, str(self.cache_dir), dict(self.encoders))

    def make_strategy(self, **pretrained: Any) -> Strategy:
        """The strategy of ``self.strategy``; ``controller=`` or ``descriptors=`` as ``make_strategy`` takes them."""
        return make_strategy(self.strategy, self.space, self.task_names, self.seed, **pretrained)

    def build(
        self,
        run_dir: Path,
        *,
        strategy: Strategy | None = None,
        executor: Executor | None = None,
        tracker: Tracker | None = None,
    ) -> Search:
        """The search in ``run_dir`` (a new one, or the one it holds, resumed).

        ``strategy``: one built from ``self.strategy`` some other way (a warm start);
        ``executor``: where children train (default: one after another in this process).
        """
        return Search(
            self.search,
            self.task_names,
            strategy or self.make_strategy(),
            executor or SequentialExecutor(self.runner()),
            run_dir,
            child_defaults=self.child.to_dict(),
            seed=self.seed,
            signature=self.signature(),
            tracker=tracker,
        )
