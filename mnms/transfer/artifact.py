"""``controller.pt``: a trained controller that other runs and tools can pick up on their own.

A search with a controller (PPO or REINFORCE) writes this file into its run dir
when it ends.  It is self-describing, so transfer (``mnms.transfer.warm_start``), zero-shot
proposals (``mnms.transfer.decode``) and reports can use it without the original config:

=====================  =============================================================
key                    value
=====================  =============================================================
``format``             ``"mnms.controller"``
``version``            ``FORMAT_VERSION`` (bumped on any incompatible change)
``algorithm``          the strategy that trained it: ``"ppo"`` or ``"reinforce"``
``controller_config``  ``ControllerConfig`` fields (the network's shape), a dict
``controller_state``   ``Controller.state_dict()``: weights, task names, space signature
``task_names``         ``list[str]``, in embedding-row order
``task_embeddings``    ``Tensor[len(task_names), task_embedding_size]``
``space``              the search space config (``SearchSpace.to_config()``)
``space_signature``    ``SearchSpace.signature()`` of that config
``run_config``         the resolved run config it came from (plain dicts and lists)
``descriptor``         with ``task_descriptors``: ``mnms.data.descriptor.descriptor_info()``
                       (version, size, encoder, sample size); absent or None without
``task_descriptors``   with ``task_descriptors``: ``Tensor[len(task_names), size]``, each
                       task's descriptor (zeros for a task added without one)
=====================  =============================================================

``task_names`` and ``task_embeddings`` are plain top-level keys so a tool can read
``torch.load(path, weights_only=True)["task_embeddings"]`` without building a
controller.  Everything is tensors and plain containers, so the file loads with
``weights_only=True`` (no code runs on load).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mnms.data.descriptor import descriptor_info
from mnms.search.controller import Controller, ControllerConfig
from mnms.search.space import SearchSpace
from mnms.search.strategies.base import Strategy
from mnms.utils.config import from_config
from mnms.utils.io import RunDir, torch_load_safe, torch_save_atomic

FORMAT = "mnms.controller"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ControllerArtifact:
    """A loaded ``controller.pt``; ``build_controller()`` turns it back into a ``Controller``."""

    path: Path
    version: int
    algorithm: str
    controller_config: ControllerConfig
    controller_state: dict[str, Any]
    task_names: list[str]
    task_embeddings: torch.Tensor
    space: SearchSpace
    run_config: dict[str, Any]
    descriptor: dict[str, Any] | None = None
    task_descriptors: torch.Tensor | None = None

    def build_controller(self, config: ControllerConfig | None = None) -> Controller:
        """The saved controller, weights loaded, knowing exactly the saved tasks.

        ``config`` may change how logits are shaped (temperature, tanh_clip), not the
        network's sizes; whether tasks have descriptors is the saved controller's.
        Torch's global random state is left untouched.
        """
        config = dataclasses.replace(
            config or self.controller_config, task_descriptors=self.controller_config.task_descriptors
        )
        descriptors = None if self.task_descriptors is None else dict(zip(self.task_names, self.task_descriptors))
        with torch.random.fork_rng(devices=[]):
            controller = Controller(self.space, self.task_names, config, descriptors=descriptors)
        controller.load_state_dict(self.controller_state)
        return controller


def save_controller_artifact(path: Path, strategy: Strategy, space: SearchSpace, config: Mapping[str, Any]) -> Path:
    """Write ``strategy``'s controller to ``path`` atomically (a kill leaves the old file or the new one).

    Only strategies that train a controller have something to transfer; the others
    (random search, Optuna) learn no weights, so they are refused here.
    """
    if not strategy.trains_controller:
        raise TypeError(f"strategy {strategy.name!r} trains no controller, so there is none to save")
    controller = strategy.controller
    if controller.space.signature() != space.signature():
        raise ValueError(
            f"the controller was built for space {controller.space.signature()}, "
            f"not the given space {space.signature()}"
        )
    embedding = controller.task_embedding
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "algorithm": strategy.name,
        "controller_config": dataclasses.asdict(controller.cfg),
        "controller_state": controller.state_dict(),
        "task_names": list(controller.task_embedding.names),
        "task_embeddings": embedding.vectors().detach().clone(),
        "space": space.to_config(),
        "space_signature": space.signature(),
        "run_config": dict(config),
        "descriptor": descriptor_info() if embedding.has_descriptors else None,
        "task_descriptors": embedding.descriptors.clone() if embedding.has_descriptors else None,
    }
    path = Path(path)
    torch_save_atomic(path, payload)
    return path


def resolve_artifact_path(path_or_run_dir: str | Path) -> Path:
    """``controller.pt`` itself, or the one inside a run dir; a clear error when there is none."""
    path = Path(path_or_run_dir).expanduser()
    if path.is_dir():
        candidate = RunDir(path).controller
        if not candidate.exists():
            raise FileNotFoundError(
                f"{path} holds no {RunDir.CONTROLLER}: it is not a search run dir, the search has not finished "
                f"(continue it with resume={path}), or it used random/optuna search, which trains no controller"
            )
        return candidate
    if not path.exists():
        raise FileNotFoundError(
            f"transfer.from={str(path_or_run_dir)!r} does not exist; "
            f"pass a {RunDir.CONTROLLER} file or the search run dir holding one"
        )
    return path


def load_controller_artifact(path_or_run_dir: str | Path) -> ControllerArtifact:
    """Read and check a ``controller.pt`` (or the one in a run dir) without running any pickled code."""
    path = resolve_artifact_path(path_or_run_dir)
    payload = torch_load_safe(path, "A controller.pt is written by a search with strategy=ppo or reinforce")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mnms controller file (no format={FORMAT!r} key)")
    if payload["version"] != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {payload['version']}; this mnms reads version "
            f"{FORMAT_VERSION}: re-export it with the mnms version that wrote it"
        )
    space = SearchSpace.from_config(payload["space"])
    if space.signature() != payload["space_signature"]:
        raise ValueError(
            f"{path}: its space config hashes to {space.signature()}, not the recorded "
            f"{payload['space_signature']}; the file is corrupt or was edited"
        )
    names, embeddings = list(payload["task_names"]), payload["task_embeddings"]
    if embeddings.shape[0] != len(names):
        raise ValueError(f"{path}: {len(names)} task names but {embeddings.shape[0]} embedding rows")
    return ControllerArtifact(
        path=path,
        version=payload["version"],
        algorithm=payload["algorithm"],
        controller_config=from_config(ControllerConfig, payload["controller_config"], "controller_config"),
        controller_state=payload["controller_state"],
        task_names=names,
        task_embeddings=embeddings,
        space=space,
        run_config=payload["run_config"],
        descriptor=payload.get("descriptor"),
        task_descriptors=payload.get("task_descriptors"),
    )
