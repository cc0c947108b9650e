"""The dataclasses Hydra composes the YAML over (structured-config schemas), registered before composing.

Each config group's YAML selects its schema in ``defaults:`` (``conf/trainer/default.yaml``
says ``- /schema/trainer@_here_``) and sets only what differs from the dataclass, so every
default lives in one place, the code, and an unknown key or a wrongly typed value fails
at composition with Hydra's message naming the full key. ``python train.py --cfg job``
prints the composed values. Strategies and executors register theirs from their
registries, so a new one needs no line here.

Composing imports the registries, and so torch and Optuna, but neither Lightning, which
only the run itself imports, nor Ray, which only ``executor=ray`` does
(``tests/test_imports.py``).
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.encoders import encoder_defaults
from mnms.executors import EXECUTORS
from mnms.search.config import SearchConfig
from mnms.search.mode import run_mode
from mnms.search.selection import ChildSourceConfig
from mnms.search.strategies import STRATEGIES
from mnms.tracking import TrackingConfig
from mnms.transfer.decode import ProposeConfig
from mnms.transfer.warm_start import TransferConfig


def register_schemas() -> None:
    """Put every schema into Hydra's ConfigStore under ``schema/`` (idempotent)."""
    nodes: dict[str, Any] = {
        "trainer": ChildTrainerConfig,
        "search": SearchConfig,
        "logger": TrackingConfig,
        "architecture": Architecture,
        "propose": ProposeConfig,
        "encoders": encoder_defaults(),
        "transfer": TransferConfig().to_mapping(),  # `from` is a Python keyword: a mapping, not the dataclass
        "child_source": ChildSourceConfig().to_mapping(),  # mode=child's child.from / select / save, the same
    }
    nodes.update({f"strategy/{name}": _with_kind(cls.Config, name) for name, cls in STRATEGIES.items()})
    nodes.update({f"executor/{name}": _with_kind(cls.Config, name) for name, cls in EXECUTORS.items()})
    store = ConfigStore.instance()
    for path, node in nodes.items():
        group, _, name = f"schema/{path}".rpartition("/")
        store.store(group=group, name=name, node=node if OmegaConf.is_config(node) else _schema(node))
    # A search's run dir is named by what it is (conf/mode/search.yaml): outputs/optuna/<time>, outputs/transfer/...
    OmegaConf.register_new_resolver("mnms.search_mode", _search_mode, replace=True)


def _search_mode(*, _root_: DictConfig) -> str:
    """The mode of the search ``_root_`` composes; ``search`` where only Hydra's node is at hand (``--cfg hydra``)."""
    return run_mode(_root_) if "strategy" in _root_ else "search"


def _schema(node: Any) -> DictConfig:
    return _writable(OmegaConf.structured(node))  # type: ignore[return-value]


def _with_kind(config: type, kind: str) -> DictConfig:
    """``config``'s schema, its ``kind`` (a field with no default) filled in with the registry's name."""
    node = OmegaConf.structured(config)
    OmegaConf.set_readonly(node, False)
    node.kind = kind
    return _writable(node)  # type: ignore[return-value]


def _writable(node: DictConfig | ListConfig) -> DictConfig | ListConfig:
    """``node`` with every read-only flag cleared: frozen dataclasses give read-only nodes, which YAML must override."""
    OmegaConf.set_readonly(node, False)
    children = node.values() if isinstance(node, DictConfig) else node
    for child in children:
        if isinstance(child, (DictConfig, ListConfig)):
            _writable(child)
    return node
