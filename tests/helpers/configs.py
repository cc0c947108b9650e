"""The real Hydra config tree, composed the way ``train.py`` composes it, and what a search builds from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnms.app.schemas import register_schemas
from mnms.search.space import SearchSpace
from mnms.search.strategies import Strategy, make_strategy, strategy_config

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``; ``hydra=True`` keeps the ``hydra`` section (launchers, sweeps)."""
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def shipped_strategy(kind: str, space: SearchSpace, tasks: Sequence[str], seed: int, *overrides: str) -> Strategy:
    """The strategy ``kind`` with the shipped settings (plus ``overrides``), built as a search builds it."""
    cfg = compose_config(f"strategy={kind}", *overrides)
    return make_strategy(strategy_config(cfg.strategy), space, tasks, seed)


def default_strategy(kind: str, space: SearchSpace, tasks: Sequence[str], seed: int = 0) -> Strategy:
    """The strategy ``kind`` with its dataclass defaults."""
    return make_strategy(strategy_config({"kind": kind}), space, tasks, seed)
