"""A task descriptor: a fixed-size vector computed from a task's data, saying what the task is.

The paper gives every task a free learned embedding, so a new task starts from a random
vector that tells the controller nothing about it. A descriptor is computed from the
task itself, and a controller pre-trained with descriptors (``strategy.controller.
task_descriptors=true``) learns a projection from it into its task-embedding space
(``mnms.search.task_embedding``). A new task then starts from what its data looks like
(``transfer.init=descriptor``): English movie reviews near sst2, Tatoeba sentences near
langid-tatoeba.

Four groups, each scaled to unit length so that none dominates by its size alone:

* ``semantic``: the mean all-MiniLM-L6-v2 sentence vector of a sample of training texts
  (what the texts are about and how they are written);
* ``script``: the share of characters by kind (ASCII letters, accented Latin letters,
  other scripts, digits, spaces, punctuation) and of letters typical of Spanish, French
  and German, as square roots so rare letters still count (script and language);
* ``form``: text length in characters and words, and the share of texts with a URL or
  @handle, a question mark, or mostly capitals (tweets, questions, documents);
* ``labels``: the number of classes, the training size (both logged) and the label
  entropy of the sample (the output side of the task).

The sample is a fixed function of the training split (seed 0, ``sample_size`` texts), not
of the run's seed or example cap, so pre-training and transfer describe a task the same way.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mnms.data.encoders import get_encoder
from mnms.data.encoders.base import cached
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task

# Bump when any feature changes meaning: a controller pre-trained on version n projects only version n.
DESCRIPTOR_VERSION = 1
ENCODER = "minilm"
SAMPLE_SIZE = 256
SEMANTIC_SIZE = 384  # all-MiniLM-L6-v2's sentence vector
# Letters that mark a language among the shared tasks' (the accented Latin letters of each).
MARKERS = {"spanish": "ñ¿¡áíóú", "french": "éèêàçœùâî", "german": "äöüß"}
SCRIPT_FEATURES = ("ascii_letter", "latin_accented", "other_letter", "digit", "space", "punctuation", *MARKERS)
FORM_FEATURES = ("log_chars", "log_words", "url_or_handle", "question", "shouting")
LABEL_FEATURES = ("log_classes", "log_train_size", "label_entropy")
FEATURES = (
    *(f"semantic_{i}" for i in range(SEMANTIC_SIZE)),
    *(f"script_{name}" for name in SCRIPT_FEATURES),
    *(f"form_{name}" for name in FORM_FEATURES),
    *(f"labels_{name}" for name in LABEL_FEATURES),
)
DESCRIPTOR_SIZE = len(FEATURES)


class DescriptorError(ValueError):
    """A task whose data cannot be described (no texts, or a single class)."""


def describe_task(task: Task, cache: FeatureCache, encoders: Mapping[str, Mapping] | None = None) -> torch.Tensor:
    """The ``[DESCRIPTOR_SIZE]`` descriptor of ``task`` (its whole training split, not a capped proxy).

    The MiniLM part goes through the feature cache, so a task described once never
    loads the model again.
    """
    texts, labels = training_sample(task, SAMPLE_SIZE)
    encoder = get_encoder(ENCODER, encoders)
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    key = encoder.cache_key("descriptor", {"texts": digest}, descriptor_version=DESCRIPTOR_VERSION)
    features, _ = cached(cache, key, lambda: {"x": encoder.embed(texts).mean(dim=0)})
    groups = [
        features["x"],
        torch.tensor(script_features(texts)),
        torch.tensor(form_features(texts)),
        torch.tensor(label_features(labels, task.num_classes, len(task.splits["train"]))),
    ]
    return torch.cat([unit(g.float()) for g in groups])


def training_sample(task: Task, size: int) -> tuple[list[str], np.ndarray]:
    """``size`` training texts and their labels drawn with seed 0 (all of them when there are fewer)."""
    train = task.splits["train"]
    if len(train) == 0:
        raise DescriptorError(
            f"task {task.name!r} has no training texts, so no descriptor can be computed: "
            "give it a non-empty train split, or use transfer.init=random|mean|<task>"
        )
    rows = np.sort(np.random.default_rng(0).permutation(len(train))[:size])
    labels = train.labels[rows]
    if len(np.unique(labels)) < 2:
        raise DescriptorError(
            f"task {task.name!r}: the {len(rows)} training texts sampled for its descriptor all have the label "
            f"{task.labels[labels[0]]!r}; a descriptor (and a classifier) needs at least two classes: check the "
            "task's labels, or use transfer.init=random|mean|<task>"
        )
    return [train.texts[i] for i in rows], labels


def script_features(texts: Sequence[str]) -> list[float]:
    """Square roots of character shares by kind, then of each language's marker letters (SCRIPT_FEATURES)."""
    counts = dict.fromkeys(SCRIPT_FEATURES, 0)
    total = 0
    for text in texts:
        for char in text:
            total += 1
            counts[_kind(char)] += 1
            lower = char.lower()
            for language, letters in MARKERS.items():
                counts[language] += lower in letters
    return [math.sqrt(counts[name] / max(total, 1)) for name in SCRIPT_FEATURES]


def _kind(char: str) -> str:
    if char.isspace():
        return "space"
    if char.isascii():
        return "ascii_letter" if char.isalpha() else "digit" if char.isdigit() else "punctuation"
    if char.isalpha():
        return "latin_accented" if "LATIN" in unicodedata.name(char, "") else "other_letter"
    return "digit" if char.isdigit() else "punctuation"


def form_features(texts: Sequence[str]) -> list[float]:
    """How long the texts are (log chars / log 10k, log words / log 1k) and what share look like tweets,
    questions or shouting (FORM_FEATURES)."""
    n = len(texts)
    chars = sum(len(t) for t in texts) / n
    words = sum(len(t.split()) for t in texts) / n
    return [
        math.log1p(chars) / math.log(10_000),
        math.log1p(words) / math.log(1_000),
        sum("http" in t or "@" in t for t in texts) / n,
        sum("?" in t for t in texts) / n,
        sum(_shouting(t) for t in texts) / n,
    ]


def _shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) > len(letters) / 2


def label_features(labels: np.ndarray, num_classes: int, train_size: int) -> list[float]:
    """log classes / log 20, log10 train size / 5, and the sample's label entropy / log classes (LABEL_FEATURES)."""
    shares = np.bincount(labels, minlength=num_classes) / len(labels)
    entropy = -sum(p * math.log(p) for p in shares if p > 0)
    return [math.log(num_classes) / math.log(20), math.log10(train_size) / 5, entropy / math.log(num_classes)]


def unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm().clamp(min=1e-12)


def descriptor_info() -> dict[str, Any]:
    """What a controller pre-trained with descriptors records about them, to refuse another version later."""
    return {"version": DESCRIPTOR_VERSION, "size": DESCRIPTOR_SIZE, "encoder": ENCODER, "sample_size": SAMPLE_SIZE}
