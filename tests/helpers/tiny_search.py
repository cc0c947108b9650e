"""Real tiny searches for the transfer, propose and Optuna tests, built from the real Hydra config.

Two real tasks capped at 300 examples, the cheap from-scratch encoders and two
epochs keep a child at tens of milliseconds, so a whole search takes seconds.
``pretrained`` is one real multitask PPO search shared by the whole session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from helpers.configs import CONF, compose_config  # noqa: F401 - CONF is re-exported for the tests
from mnms.app.run import run

PRETRAIN_TASKS = ["trec", "langid-tatoeba"]
TINY = ["max_examples=300", "trainer.max_epochs=2"]
# search_space=small without minilm: 8 architectures, every child trains in tens of milliseconds.
TINY_SEARCH = [
    "search_space=small",
    "search_space.decisions.0.choices=[words,char-ngrams]",
    "logger=none",
    "search.progress=false",
    "search.batch_size=4",
    "executor=sequential",  # the main job trains on the local pool; the executor tests choose their own
]


def tiny(*overrides: str) -> list[str]:
    """``TINY`` plus, unless ``overrides`` choose another mode, ``TINY_SEARCH``."""
    searching = not any(override.startswith("mode=") and override != "mode=search" for override in overrides)
    return [*TINY, *(TINY_SEARCH if searching else ())]


def tiny_run(run_dir: Path, cache_dir: Path, *overrides: str) -> tuple[DictConfig, object]:
    """Compose the tiny settings + ``overrides`` exactly as ``train.py`` would and run it in ``run_dir``."""
    given = [*tiny(*overrides), f"paths.cache_dir={cache_dir}", *overrides]
    cfg = compose_config(*given)
    return cfg, run(cfg, run_dir, given)


@pytest.fixture(scope="session")
def pretrained(data_dir: Path, session_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a real 16-trial multitask PPO search on trec and langid-tatoeba."""
    run_dir = tmp_path_factory.mktemp("pretrained")
    tiny_run(run_dir, session_cache_dir, f"tasks=[{','.join(PRETRAIN_TASKS)}]", "search.trials=16")
    return run_dir
