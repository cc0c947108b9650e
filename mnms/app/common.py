"""What every mode reads from the composed config the same way: tasks, child defaults, encoder options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig, resolve_device
from mnms.data.descriptor import describe_task
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task, find_spec, load_task
from mnms.tracking import TrackingConfig
from mnms.utils.config import from_config, plain

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def load_configured_task(cfg: DictConfig, name: str, max_examples: int | None = None) -> Task:
    """Load ``name`` the way every mode does: data dir, spec folders, example cap, seed.

    ``cfg.max_examples`` (quick runs of any mode) wins over a mode's own ``max_examples``.
    """
    cap = cfg.max_examples if cfg.max_examples is not None else max_examples
    return load_task(name, cfg.paths.data_dir, spec_dirs=spec_dirs(cfg), max_examples=cap, seed=cfg.seed)


def task_descriptor(cfg: DictConfig, name: str) -> torch.Tensor:
    """``name``'s descriptor (``mnms.data.descriptor``), of the whole task: no example cap, whatever the run's."""
    task = load_task(name, cfg.paths.data_dir, spec_dirs=spec_dirs(cfg))
    return describe_task(task, FeatureCache(cfg.paths.cache_dir), encoder_options(cfg))


def task_provenance(cfg: DictConfig, name: str, max_examples: int | None = None) -> dict[str, Any]:
    """How ``load_configured_task`` loaded ``name``: its spec (None for a plain data-dir folder) and example cap."""
    spec = find_spec(str(name), spec_dirs(cfg))
    cap = cfg.max_examples if cfg.max_examples is not None else max_examples
    return {"spec": spec.describe() if spec else None, "max_examples": cap, "sampling_seed": cfg.seed}


def spec_dirs(cfg: DictConfig) -> list[Path]:
    """Where task spec YAMLs are looked up: ``conf/dataset/``, then ``paths.task_specs``."""
    return [CONF_DIR / "dataset", *map(Path, cfg.paths.task_specs)]


def command_line_keys(cfg: DictConfig) -> set[str]:
    """The keys set on the command line (Hydra's task overrides, ``+``/``++``/``~`` stripped).

    From ``cfg.hydra`` when the config was composed with it, else from the running Hydra app.
    """
    overrides = OmegaConf.select(cfg, "hydra.overrides.task")
    if overrides is None and HydraConfig.initialized():
        overrides = HydraConfig.get().overrides.task
    return {str(item).split("=", 1)[0].lstrip("+~") for item in overrides or ()}


def child_arch(cfg: DictConfig) -> Architecture:
    """``child.arch``: the child of ``mode=child``, and every field a search leaves out."""
    return from_config(Architecture, cfg.child.arch)


def child_trainer(cfg: DictConfig) -> ChildTrainerConfig:
    """``trainer``: every child's budget, its accelerator checked against this machine up
    front (``gpu`` without CUDA fails here, not as one failed child after another)."""
    trainer_cfg = from_config(ChildTrainerConfig, cfg.trainer)
    resolve_device(trainer_cfg.accelerator)
    return trainer_cfg


def tracking_config(cfg: DictConfig, run_dir: Path, *, group: str, job_type: str, name: str) -> TrackingConfig:
    """``logger``, its W&B files in the run dir unless ``logger.dir`` says otherwise, and the run's labels:
    ``group``, ``job_type`` and ``name`` where the user set none, so runs of the same tasks overlay by default."""
    labels = {"group": group, "job_type": job_type, "name": name}
    values = {**plain(cfg.logger), "dir": cfg.logger.dir or str(run_dir)}
    return from_config(TrackingConfig, {**values, **{key: values[key] or label for key, label in labels.items()}})


def logged_config(cfg: DictConfig, tracking: TrackingConfig, unused: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config a run mirrors to W&B: its own, less the top-level keys its mode never reads, with the labels
    it runs under (what ``tracking_config`` filled in) instead of the nulls that let them default."""
    values = {key: value for key, value in plain(cfg).items() if key not in unused}
    labels = {key: getattr(tracking, key) for key in ("group", "job_type", "name")}
    return {**values, "logger": {**values.get("logger", {}), **labels}}


def encoder_options(cfg: DictConfig) -> dict[str, Any]:
    return plain(cfg.encoders)
