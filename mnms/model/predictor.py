"""A saved model, loaded: classify new texts the way the child classified its test split.

Texts go through the same code as a child's training data (``child_inputs``), with the
vocabularies the child trained with fixed, then through the rebuilt classifier in
evaluation mode, in batches of the size its test split was scored in and with the
intra-op threads it trained with. The test split's texts therefore get the exact
predictions ``mode=child`` scored, and every way of predicting (``mode=predict``, this
API, another process) gives the same numbers for the same texts.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_modules.datamodule import EVAL_BATCH_SIZE, InMemoryBatches
from lightning_modules.trainer import build_classifier
from mnms.child.inputs import ChildInputs, child_inputs
from mnms.data.feature_cache import FeatureCache
from mnms.model.folder import CHECKPOINT, MANIFEST, ModelError, SavedModel, read_model
from mnms.utils.threads import torch_threads

SPLIT = "predict"
# Texts encoded at once. The sentence encoders batch by length within what they are
# given, so a file of up to this many texts is encoded exactly as a split of that size
# was during training; the chunk bounds memory (cached transformer states are large).
CHUNK_SIZE = 8192


@dataclass(frozen=True)
class Predictions:
    """Per text, the predicted label and the probability of every class (columns in ``classes`` order)."""

    classes: tuple[str, ...]
    labels: list[str]
    probabilities: np.ndarray  # float32 [N, len(classes)]

    def __len__(self) -> int:
        return len(self.labels)

    def records(self) -> Iterator[dict[str, Any]]:
        """``{"prediction": label, "probabilities": {class: p}}`` per text, in order."""
        for label, row in zip(self.labels, self.probabilities.tolist()):
            yield {"prediction": label, "probabilities": dict(zip(self.classes, row))}


@dataclass(frozen=True, eq=False)
class _Texts:
    """Texts to predict, shaped as the task the encoders read: one split, no labels."""

    texts: tuple[str, ...]
    name: str = "predict"
    splits: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", {SPLIT: self})

    def fingerprint(self, split: str) -> str:
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:  # every encoder asks, once per cache key: hash the texts once
        return hashlib.sha256(json.dumps(["predict", self.texts]).encode()).hexdigest()


class Model:
    """A trained child ready to classify texts (``mnms.load_model(folder)``).

    ``cache_dir``: a feature cache folder (``paths.cache_dir`` in ``mode=predict``), so
    texts predicted again are not encoded again; None keeps features in memory only.
    """

    def __init__(self, saved: SavedModel, cache_dir: str | Path | None = None) -> None:
        self.saved = saved
        self.cache = FeatureCache(cache_dir)
        self._module: torch.nn.Module | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The label names, in the order of the probability columns."""
        return self.saved.labels

    @property
    def manifest(self) -> dict[str, Any]:
        """The folder's ``model.json``: architecture, task, metrics, provenance."""
        return self.saved.manifest

    def __repr__(self) -> str:
        task, encoder = self.manifest["task"]["name"], self.saved.arch.encoder
        return f"Model({str(self.saved.folder)!r}, task={task!r}, encoder={encoder!r}, classes={list(self.classes)})"

    def predict(self, texts: Sequence[str], *, chunk_size: int = CHUNK_SIZE, on_chunk: Any = None) -> Predictions:
        """The predictions for ``texts`` (non-empty strings), in order.

        ``on_chunk(n)`` is called after every ``chunk_size`` texts (a progress bar's update).
        """
        texts = _checked(texts)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer")
        parts = []
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            parts.append(self._probabilities(chunk))
            if on_chunk is not None:
                on_chunk(len(chunk))
        probabilities = np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)] if len(probabilities) else []
        return Predictions(self.classes, labels, probabilities)

    def _probabilities(self, texts: Sequence[str]) -> np.ndarray:
        saved = self.saved
        with torch_threads(saved.threads):
            inputs = child_inputs(_Texts(tuple(texts)), saved.arch, self.cache, saved.encoders, "cpu", saved.vocabs)
            module = self._classifier(inputs)
            with torch.inference_mode():
                logits = [module(batch) for batch in InMemoryBatches(inputs.splits[SPLIT], EVAL_BATCH_SIZE)]
        return torch.softmax(torch.cat(logits), dim=-1).numpy()

    def _classifier(self, inputs: ChildInputs) -> torch.nn.Module:
        """The classifier, built once with the saved weights (without disturbing the caller's RNG)."""
        if self._module is None:
            with torch.random.fork_rng(devices=[]):
                module = build_classifier(self.saved.arch, inputs, len(self.classes))
            try:
                module.load_state_dict(self.saved.state_dict)
            except RuntimeError as error:  # missing, unexpected or mis-shaped weights
                problem = str(error).splitlines()[0]
                raise ModelError(
                    f"{self.saved.folder / CHECKPOINT} does not hold the weights {MANIFEST} describes "
                    f"({len(self.classes)} labels, its architecture): {problem}. The two files come from different "
                    "models or one was edited: copy the model folder again, or train it again"
                ) from None
            self._module = module.eval()
        return self._module


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("predict() takes a list of texts, not one string: predict([text])")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i} is empty or not a string ({text!r}): give every text some characters")
    return texts


def load_model(folder: str | Path, cache_dir: str | Path | None = None) -> Model:
    """The model ``mode=child`` saved in ``folder`` (``<run dir>/model``), ready to ``predict(texts)``."""
    return Model(read_model(folder), cache_dir)
