"""The model folder ``mode=child`` writes: everything that rebuilds and runs a trained child offline.

``model.json`` (the manifest: architecture, label names in order, every encoder's
options and feature version, the trainer's thread count, the task's spec and data
checksums, where the architecture came from, mnms and library versions),
``model.ckpt`` (a Lightning checkpoint, weights only, of the best epoch) and
``vocab.safetensors`` (the vocabulary of each bag encoder the child used). Nothing in it
needs the task's data or the run dir, and nothing in it is unpickled: the checkpoint
loads with ``torch.load(weights_only=True)``, the vocabularies with safetensors.

The folder is written under a temporary name and renamed into place, so a crash never
leaves a half model behind.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.inputs import Vocabularies, encoder_names
from mnms.child.result import ChildResult
from mnms.data.encoders import encoder_class, get_encoder
from mnms.data.tasks import Task
from mnms.utils.config import from_config
from mnms.utils.io import torch_load_safe, write_json_atomic
from mnms.utils.version import VERSION

# Bump when the folder's layout or the meaning of a manifest field changes; a folder of
# another format is refused with the versions involved rather than mis-read.
MODEL_FORMAT = 1
MANIFEST = "model.json"
CHECKPOINT = "model.ckpt"
VOCABULARIES = "vocab.safetensors"


class ModelError(ValueError):
    """A model folder that cannot be used; the message names the folder, what is wrong and the fix."""


@dataclass(frozen=True)
class SavedModel:
    """What a model folder holds, read and checked: enough to rebuild the classifier and encode new texts."""

    folder: Path
    arch: Architecture
    labels: tuple[str, ...]
    encoders: dict[str, dict[str, Any]]  # encoder name -> the options it encoded with (defaults included)
    threads: int  # intra-op threads the child trained with: predictions use the same, so their sums match
    state_dict: dict[str, torch.Tensor]
    vocabs: dict[str, torch.Tensor]
    manifest: dict[str, Any]


def staging_folder(folder: Path) -> Path:
    """Where ``folder`` is written before it is moved into place (emptied first)."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def write_model(
    staging: Path,
    folder: Path,
    *,
    task: Task,
    arch: Architecture,
    trainer: ChildTrainerConfig,
    seed: int,
    result: ChildResult,
    vocabs: Vocabularies,
    encoder_options: Mapping[str, Any] | None,
    provenance: Mapping[str, Any],
) -> Path:
    """Complete ``staging`` (which holds ``evaluate_child``'s checkpoint) and move it to ``folder``."""
    from safetensors.torch import save_file

    if not (staging / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{staging / CHECKPOINT} was not written: the child's checkpoint is missing")
    encoders = {name: get_encoder(name, encoder_options) for name in encoder_names(arch)}
    manifest = {
        "format": MODEL_FORMAT,
        "mnms_version": VERSION,
        "arch": arch.to_dict(),
        "labels": list(task.labels),
        "encoders": {name: {"options": e.options, "version": e.version} for name, e in encoders.items()},
        "trainer": asdict(trainer),
        "seed": seed,
        "task": {
            "name": task.name,
            "language": task.language,
            "examples": {split: len(data) for split, data in task.splits.items()},
            "sha256": {split: task.fingerprint(split) for split in task.splits},  # of texts, labels and label names
            **provenance.get("task", {}),
        },
        "source": provenance.get("source"),
        "metrics": result.to_dict(),
        "libraries": _libraries(),
    }
    save_file({name: vocab.contiguous() for name, vocab in vocabs.items()}, str(staging / VOCABULARIES))
    write_json_atomic(staging / MANIFEST, manifest)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _libraries() -> dict[str, str]:
    import pytorch_lightning

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
    }


def read_model(folder: str | Path) -> SavedModel:
    """The model in ``folder``, checked: its format, its encoders' feature versions, its files."""
    folder = Path(folder).expanduser()
    manifest = _manifest(folder)
    arch = _field(folder, manifest, "arch", lambda value: from_config(Architecture, value, f"{folder / MANIFEST} arch"))
    encoders = _field(folder, manifest, "encoders", dict)
    if arch.encoder not in encoders:  # a model is loaded only with the encoder its weights were trained on
        raise ModelError(
            f"{folder / MANIFEST} names the encoder {arch.encoder!r} in its arch but saved none by that name "
            f"(it saved {sorted(encoders)}): the file was edited; copy the model folder again, or train it again"
        )
    for name, entry in encoders.items():
        current = encoder_class(name).version
        if entry["version"] != current:
            raise _incompatible(
                folder,
                manifest,
                f"its encoder {name!r} computed features of version {entry['version']}, and this mnms computes "
                f"version {current}: the same text would get other features",
            )
    fix = f"copy {folder} again from where mode=child wrote it, or train it again"
    state = torch_load_safe(folder / CHECKPOINT, fix) if (folder / CHECKPOINT).is_file() else None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ModelError(f"{folder / CHECKPOINT} is missing or holds no Lightning checkpoint (no state_dict): {fix}")
    return SavedModel(
        folder=folder,
        arch=arch,
        labels=tuple(_field(folder, manifest, "labels", list)),
        encoders={name: dict(entry["options"]) for name, entry in encoders.items()},
        threads=int(_field(folder, manifest, "trainer", dict)["threads"]),
        state_dict=state["state_dict"],
        vocabs=_vocabularies(folder, fix),
        manifest=manifest,
    )


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    how = "model= takes the folder mode=child saves as <run dir>/model"
    if not folder.is_dir():
        raise ModelError(f"model folder {str(folder)!r} does not exist or is not a folder: {how}")
    if not path.is_file():
        raise ModelError(f"{folder} is not a model folder (it has no {MANIFEST}): {how}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is not valid UTF-8 JSON ({error}): copy the model folder again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _incompatible(folder, manifest if isinstance(manifest, dict) else {}, f"it is of format {found!r}")
    return manifest


def _incompatible(folder: Path, manifest: Mapping[str, Any], problem: str) -> ModelError:
    written = manifest.get("mnms_version", "an unknown version")
    return ModelError(
        f"model folder {folder} was written by mnms {written} and {problem}; this mnms {VERSION} reads "
        f"model format {MODEL_FORMAT} only. Fix: predict with mnms {written} (pip install mnms=={written}), or "
        "train the model again with this version (mode=child child.from=<its search run dir>)"
    )


def _field(folder: Path, manifest: Mapping[str, Any], key: str, convert: Any) -> Any:
    """``manifest[key]`` through ``convert``; a missing or unusable field is a ModelError naming it."""
    if key not in manifest:
        raise _incompatible(folder, manifest, f"its {MANIFEST} has no {key!r}")
    try:
        return convert(manifest[key])
    except (TypeError, ValueError) as error:
        raise _incompatible(folder, manifest, f"its {MANIFEST} {key!r} cannot be used ({error})") from None


def _vocabularies(folder: Path, fix: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / VOCABULARIES
    try:
        return load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError) as error:
        raise ModelError(f"{path} is missing or damaged ({error}): {fix}") from None
