"""``resume=<run dir>``: go on with the search that run dir holds, under the settings it recorded.

The run dir's own ``config.yaml`` (or, for a search killed before it wrote one, Hydra's
copy of the command that started it) is the config; what the command line gives beside
``resume=`` is laid over it, and the search's resume contract (``mnms.search.resume``)
then refuses, naming the key and both values, any change to a setting the trials depend
on. So ``resume=<dir>`` alone continues a search, ``resume=<dir> search.trials=96``
extends it, and the search's original command with ``resume=`` added still works.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnms.search.records import load_checkpoint
from mnms.search.resume import upgraded_signature
from mnms.utils.config import ConfigError, plain
from mnms.utils.io import RunDir

_ABSENT = object()
log = logging.getLogger(__name__)


def resumed_config(cfg: DictConfig, run_dir: Path, overrides: Sequence[str]) -> DictConfig:
    """The config ``run_dir``'s search recorded, with the values ``cfg`` took from ``overrides`` (the command
    line's ``key=value`` items) laid over it, and ``resume`` set to ``run_dir``."""
    recorded = recorded_config(run_dir)
    _fill_what_it_meant(recorded, run_dir)
    ignored = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:  # a group of whole-config settings (experiment=, study=): no one key to compare
            ignored.append(override)
            continue
        # A group given anew (strategy=random, executor=local) replaces the recorded one whole, as it would
        # compose: merged, the recorded group's other keys would be left over, and refused as unknown.
        OmegaConf.update(recorded, key, copy.deepcopy(value), merge=False, force_add=True)
    if ignored:
        log.warning(
            "resume=%s: %s ignored: a resumed search runs under the settings it recorded (its config.yaml); "
            "give the keys to change, e.g. search.trials=N",
            run_dir,
            " ".join(ignored),
        )
    OmegaConf.update(recorded, "resume", str(run_dir), force_add=True)
    return recorded


# Where each section of a search's signature lives in its config.
_SIGNATURE_SECTIONS = {"search": "search", "strategy": "strategy", "trainer": "trainer", "encoders": "encoders"}
_SIGNATURE_SECTIONS["child"] = "child.arch"


def _fill_what_it_meant(recorded: DictConfig, run_dir: Path) -> None:
    """Give every setting ``recorded`` lacks (one added to mnms after the run started) the value the run's
    checkpoint says it meant, not today's default: an old run resumes as it ran."""
    state = load_checkpoint(run_dir)
    if state is None:
        return
    saved = upgraded_signature(state["signature"], plain(recorded))
    for section, where in _SIGNATURE_SECTIONS.items():
        for dotted, value in _leaves(saved.get(section) or {}):
            key = f"{where}.{dotted}"
            if OmegaConf.select(recorded, key, default=_ABSENT) is _ABSENT:
                OmegaConf.update(recorded, key, value, force_add=True)


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def recorded_config(run_dir: Path) -> DictConfig:
    """The config of the search in ``run_dir``: its ``config.yaml``, else Hydra's copy of the job that started it."""
    files = RunDir(run_dir)
    for path in (files.config, files.hydra_config):
        if not path.is_file():
            continue
        try:
            loaded = OmegaConf.load(path)
        except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as error:
            raise ConfigError(
                f"resume={str(run_dir)!r}: {path} cannot be read ({str(error).splitlines()[0]}); restore it from a "
                "copy, or give the search's original settings on the command line with hydra.run.dir=<the run dir>"
            ) from None
        if isinstance(loaded, DictConfig):
            return loaded
    raise ConfigError(
        f"resume={str(run_dir)!r} holds no recorded config ({files.CONFIG} or {files.HYDRA_CONFIG}): it was not "
        "started by train.py; give its settings on the command line with hydra.run.dir=<the run dir>"
    )
