"""Searches built without Hydra, as benches build them: a ``SearchJob`` of real tasks and plain configs.

Two real tasks capped at 300 examples, cheap from-scratch encoders and two epochs keep
a child at tens of milliseconds, so a whole search runs in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.tasks import load_task
from mnms.search.config import SearchConfig
from mnms.search.job import SearchJob
from mnms.search.space import SearchSpace
from mnms.search.strategies import strategy_config

TASKS = ("trec", "langid-tatoeba")
CHEAP_SPACE = {
    "decisions": [
        {"name": "encoder", "choices": ["words", "char-ngrams"]},
        {"name": "hidden_layers", "choices": [0, 1]},
        {"name": "learning_rate", "choices": [0.003, 0.03]},
    ]
}


def tiny_job(
    data_dir: Path,
    cache_dir: Path,
    *,
    tasks: Sequence[str] = TASKS,
    space: dict[str, Any] = CHEAP_SPACE,
    kind: str = "ppo",
    seed: int = 0,
    **search: Any,
) -> SearchJob:
    """A search of ``tasks`` over ``space`` with strategy ``kind``'s defaults; ``search`` sets ``SearchConfig`` fields
    (batches of 4 and no progress bar unless it says otherwise)."""
    return SearchJob(
        tasks={name: load_task(name, data_dir, max_examples=300, seed=0) for name in tasks},
        space=SearchSpace.from_config(space),
        strategy=strategy_config({"kind": kind}),
        search=SearchConfig(**{"batch_size": 4, "progress": False, **search}),
        trainer=ChildTrainerConfig(max_epochs=2),
        child=Architecture(batch_size=32),
        seed=seed,
        cache_dir=cache_dir,
    )
