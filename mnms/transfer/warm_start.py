"""Transfer: start a search on new tasks from a controller pre-trained on other tasks.

The paper's recipe (Wong & Gesmundo, NeurIPS 2018): keep the pre-trained
controller's generic weights (LSTM, choice embeddings, softmax heads), give each
new task a fresh embedding row, and carry on with the same policy-gradient
training.  The pre-trained policy is then the new task's starting point, which is
what makes a transferred search converge in far fewer trials than one from scratch.

The weights only mean something in the space they were trained in (one softmax
head per decision, one output per choice), so a space that differs in any
decision, choice, choice order or condition is refused before anything trains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from mnms.data.descriptor import descriptor_info
from mnms.search.controller import Controller, ControllerConfig
from mnms.search.space import Decision, SearchSpace
from mnms.search.strategies import controller_strategy
from mnms.search.strategies.policy_gradient import PolicyGradientConfig
from mnms.search.task_embedding import INITS
from mnms.transfer.artifact import ControllerArtifact, load_controller_artifact
from mnms.utils.config import ConfigError, check, from_keyword_mapping, to_keyword_mapping

# Computes a task's descriptor (mnms.data.descriptor.describe_task on its data), only when needed.
Describe = Callable[[str], torch.Tensor]
# ControllerConfig fields that fix the shape of the weights; temperature and tanh_clip may differ.
SHAPE_FIELDS = ("hidden_size", "choice_embedding_size", "task_embedding_size")


@dataclass(frozen=True)
class TransferConfig:
    """The ``transfer:`` config section (``source`` is the YAML key ``from``).

    ``init``: how a new task's embedding starts -- ``random`` (the paper), ``mean``
    of the pre-trained tasks' embeddings, the name of a pre-trained task to copy, or
    ``descriptor``: the pre-trained projection of the task's descriptor (a controller
    pre-trained with ``strategy.controller.task_descriptors=true``).
    ``freeze_body``: train only the task embeddings, keep every other weight as pre-trained.
    """

    section: ClassVar[str] = "transfer"

    source: str | None = None
    init: str = "random"
    freeze_body: bool = False

    def __post_init__(self) -> None:
        check(self, "init", bool(self.init), "'random', 'mean', 'descriptor' or a pre-trained task's name")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TransferConfig:
        """From the ``transfer`` section, whose YAML key ``from`` is the field ``source``."""
        return from_keyword_mapping(cls, values)

    def to_mapping(self) -> dict[str, Any]:
        """The ``transfer`` section for this config (``source`` as ``from``): the inverse of ``from_mapping``."""
        return to_keyword_mapping(self)


def _lacks_and_adds(saved: list, current: list, saved_keys: list, current_keys: list) -> str:
    """ "this run lacks [..] and adds [..]", naming only what is there (keys say when two values are the same)."""
    lacks = [value for value, key in zip(saved, saved_keys) if key not in current_keys]
    adds = [value for value, key in zip(current, current_keys) if key not in saved_keys]
    return " and ".join(([f"this run lacks {lacks}"] if lacks else []) + ([f"adds {adds}"] if adds else []))


def _decision_mismatch(saved: Decision, current: Decision) -> str | None:
    """How ``current`` differs from ``saved`` (same name), or None; values compare as JSON (1 != 1.0 != true)."""
    theirs, ours = [json.dumps(c) for c in saved.choices], [json.dumps(c) for c in current.choices]
    if ours != theirs:
        detail = _lacks_and_adds(list(saved.choices), list(current.choices), theirs, ours)
        return (
            f"decision {current.name!r} has choices {list(saved.choices)} there but {list(current.choices)} "
            f"here ({detail or 'same choices in another order'})"
        )
    theirs_when, ours_when = ({k: list(v) for k, v in d.when.items()} for d in (saved, current))
    if json.dumps(theirs_when, sort_keys=True) != json.dumps(ours_when, sort_keys=True):
        return (
            f"decision {current.name!r} is decided when {theirs_when or 'always'} there "
            f"but when {ours_when or 'always'} here"
        )
    return None


def space_mismatch(saved: SearchSpace, current: SearchSpace) -> str | None:
    """The first difference between the pre-trained controller's space and this run's, decision by decision."""
    theirs, ours = list(saved.names), list(current.names)
    if theirs != ours:
        if detail := _lacks_and_adds(theirs, ours, theirs, ours):
            return f"the decisions differ: {detail}"
        i = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
        return f"decision #{i} is {theirs[i]!r} there but {ours[i]!r} here (same decisions in another order)"
    for a, b in zip(saved.decisions, current.decisions):
        if problem := _decision_mismatch(a, b):
            return problem
    return None


def check_compatible(artifact: ControllerArtifact, space: SearchSpace, network: ControllerConfig) -> None:
    """Refuse, before any training, a space or network shape the pre-trained weights do not fit.

    Whether task vectors come from descriptors is the pre-trained controller's choice; a run
    that asks for them from a controller pre-trained without is refused.
    """
    if network.task_descriptors and artifact.descriptor is None:
        raise ConfigError(
            f"strategy.controller.task_descriptors=true, but transfer.from={str(artifact.path)!r} was pre-trained "
            f"without task descriptors. {HOW_TO_DESCRIPTORS}"
        )
    if problem := space_mismatch(artifact.space, space):
        raise ConfigError(
            f"transfer.from={str(artifact.path)!r}: the search space differs from the pre-trained controller's: "
            f"{problem}. Its weights have one softmax head per decision and one output per choice, so the spaces "
            f"must agree decision by decision; search the space it was trained with (saved under the file's 'space' "
            f"key, e.g. copy it into conf/search_space/)"
        )
    for name in SHAPE_FIELDS:
        saved, ours = getattr(artifact.controller_config, name), getattr(network, name)
        if saved != ours:
            raise ConfigError(
                f"transfer.from={str(artifact.path)!r} has {name}={saved} but this run's {network.section}.{name}="
                f"{ours}; the pre-trained weights fix the network's shape: set {network.section}.{name}={saved}"
            )


HOW_TO_DESCRIPTORS = (
    "Pre-train one with descriptors (python train.py experiment=pretrain, which sets "
    "strategy.controller.task_descriptors=true, or add that override to your own pre-training search), "
    "or start the new task from transfer.init=random|mean|<a pre-trained task>"
)


def check_descriptors(artifact: ControllerArtifact, init: str) -> None:
    """``transfer.init=descriptor`` needs a controller pre-trained with descriptors of this mnms's version."""
    if init != "descriptor":
        return
    if artifact.descriptor is None:
        raise ConfigError(
            f"transfer.init=descriptor: {str(artifact.path)!r} was pre-trained without task descriptors, so it "
            f"has no projection to map a new task's descriptor into its task-embedding space. {HOW_TO_DESCRIPTORS}"
        )
    theirs, ours = artifact.descriptor, descriptor_info()
    if theirs["version"] != ours["version"] or theirs["size"] != ours["size"]:
        raise ConfigError(
            f"transfer.init=descriptor: {str(artifact.path)!r} projects descriptors of version {theirs['version']} "
            f"(size {theirs['size']}), but this mnms computes version {ours['version']} (size {ours['size']}): "
            "pre-train again with this mnms, or use transfer.init=random|mean|<a pre-trained task>"
        )


def add_new_tasks(
    controller: Controller, tasks: Sequence[str], init: str, seed: int, describe: Describe | None = None
) -> list[str]:
    """Give each task the controller has never seen an embedding per ``init``; returns the added names.

    ``init`` must name a *pre-trained* task (checked before any task is added), so a
    run's own new tasks never initialise each other. ``init="descriptor"`` projects
    ``describe(task)``. Rebuild the optimiser afterwards: ``TaskEmbedding.add_task``
    replaces the embedding parameter.
    """
    embedding = controller.task_embedding
    known = list(embedding.names)
    if init not in INITS and init not in known:
        raise ConfigError(
            f"transfer.init={init!r} is neither 'random', 'mean', 'descriptor' nor a pre-trained task; "
            f"the pre-trained tasks are {known}"
        )
    if init == "descriptor" and not embedding.has_descriptors:
        raise ConfigError(
            f"transfer.init=descriptor: the controller was pre-trained without descriptors. {HOW_TO_DESCRIPTORS}"
        )
    if init == "descriptor" and describe is None:
        raise ValueError("transfer.init=descriptor needs describe(task) to compute new tasks' descriptors")
    new = [task for task in dict.fromkeys(tasks) if task not in known]
    for task in new:
        descriptor = describe(task) if init == "descriptor" else None
        embedding.add_task(task, init, generator=new_task_generator(seed, task), descriptor=descriptor)
    return new


def new_task_generator(seed: int, task: str) -> torch.Generator:
    """The random stream of a new task's embedding, drawn from ``seed`` and the task's name.

    Not ``manual_seed(seed)``: that is the stream the pre-training run drew its own task
    rows from, so with equal seeds a "fresh" vector was a copy of the first pre-trained
    task's starting vector. Keyed by name, a task's vector also does not depend on which
    other tasks are added with it.
    """
    digest = hashlib.sha256(f"task-embedding:{seed}:{task}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def freeze_body(controller: Controller) -> None:
    """Stop gradients to everything but the task embeddings (the new tasks learn only their vector)."""
    for name, parameter in controller.named_parameters():
        parameter.requires_grad_(name.startswith("task_embedding."))


def warm_start(
    transfer: TransferConfig,
    config: PolicyGradientConfig,
    space: SearchSpace,
    tasks: Sequence[str],
    seed: int,
    describe: Describe | None = None,
) -> Controller:
    """The pre-trained controller ``transfer.from`` names, ready to go on searching ``tasks`` under ``config``.

    Tasks it already knows keep their pre-trained embeddings; new ones get one per
    ``transfer.init`` (``descriptor``: from ``describe(task)``). Pass it to
    ``make_strategy(..., controller=)``: the learning state (optimiser, baselines,
    replay bank) starts fresh from this run's config.
    """
    if transfer.source is None:
        raise ConfigError("a warm start needs transfer.from: a controller.pt or a search run dir holding one")
    controller_strategy(config.kind)  # refuses, before anything loads, a strategy with no controller
    artifact = load_controller_artifact(Path(transfer.source))
    check_compatible(artifact, space, config.controller)
    check_descriptors(artifact, transfer.init)
    controller = artifact.build_controller(config.controller)
    add_new_tasks(controller, tasks, transfer.init, seed, describe)
    if transfer.freeze_body:
        freeze_body(controller)
    return controller
