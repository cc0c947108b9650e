"""What every encoder returns and the small helpers they share.

An encoder turns a task's texts into tensors once (cached by :class:`FeatureCache`) plus a
factory for the child's input layer, so that training a child never touches raw text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from mnms.data.feature_cache import FeatureCache
from mnms.utils.config import is_int, plain, reject_unknown

Batch = dict[str, torch.Tensor]  # tensors whose first dim is the example index
BAG_POOLINGS = ("mean", "sqrtn")  # what a bag pools up front; max pooling needs the token vectors (encode_tokens)


class Split(Protocol):
    texts: tuple[str, ...]
    labels: np.ndarray


class Task(Protocol):
    """The part of ``mnms.data.tasks.Task`` the encoders rely on."""

    name: str
    splits: Mapping[str, Split]

    def fingerprint(self, split: str) -> str: ...


@dataclass
class EncodedTask:
    """A task's inputs, ready for children.

    ``splits`` maps split name to either ``{"x": float32 [N, D]}`` (dense),
    ``{"ids": int64 [N, L], "weights": float32 [N, L]}`` (bag; padding id 0 has weight 0)
    or whatever a token-level or transformer input layer reads.
    """

    splits: dict[str, Batch]
    dim: int
    # A fresh module per call: Batch -> float32 [B, dim], or, when ``token_level``, a pair
    # (token vectors float32 [B, L, dim], mask bool [B, L]) for a convolution or pooling to follow.
    make_input_layer: Callable[[], nn.Module]
    from_cache: bool  # every split's tensors came from the FeatureCache
    token_level: bool = False


class DenseInput(nn.Module):
    """Input layer for precomputed features: nothing to learn, returns ``batch["x"]``."""

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch["x"]


class Encoder(ABC):
    """One choice of the "embedding module" decision.

    Subclasses declare their option ``defaults``; options given by the config override them and
    unknown option names are rejected. ``runtime_options`` do not change the features (batch
    size, progress bar, layer width) and are left out of cache keys. ``free_options`` (option ->
    why) change no result at all, so a resumed search may change them; every other option is
    part of the resume contract. ``version`` is part of every cache key: bump it when the
    features an encoder computes change.
    """

    has_pretrained_table: ClassVar[bool] = False  # fine_tune is meaningful only if True
    token_level: ClassVar[bool] = False  # can return token vectors (encode_tokens): convolution, max pooling
    transformer_layers: ClassVar[int] = 0  # top layers fine_tune_layers may train (encode_top_layers)
    defaults: ClassVar[Mapping[str, Any]] = {}
    runtime_options: ClassVar[frozenset[str]] = frozenset()
    free_options: ClassVar[Mapping[str, str]] = {}
    version: ClassVar[int] = 1

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        options = plain(options or {})
        reject_unknown(options, list(self.defaults), f"encoders.{name}")
        self.name = name
        self.options: dict[str, Any] = {**self.defaults, **options}
        # How often encode() needed the heavy model/table; stays 0 while the cache serves everything.
        self.model_uses = 0
        self.device = "cpu"  # where a heavy model runs while encoding (get_encoder sets it)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.options})"

    @abstractmethod
    def encode(self, task: Task, *, fine_tune: bool, pooling: str, cache: FeatureCache) -> EncodedTask:
        """Tensors for every split of ``task`` plus the input-layer factory."""

    def encode_tokens(self, task: Task, *, fine_tune: bool, cache: FeatureCache) -> EncodedTask:
        """Token vectors instead of one vector per text (only if ``token_level``)."""
        raise NotImplementedError(f"encoder {self.name!r} returns one vector per text, not token vectors")

    def encode_top_layers(self, task: Task, layers: int, cache: FeatureCache) -> EncodedTask:
        """Cached states below the top ``layers`` transformer layers, which the input layer trains."""
        raise NotImplementedError(f"encoder {self.name!r} has no transformer layers to fine-tune")

    def cache_key(self, kind: str, data: Mapping[str, str], **extra: Any) -> dict[str, Any]:
        """Everything the cached tensors depend on: encoder, feature options, data fingerprints."""
        feature_options = {k: v for k, v in self.options.items() if k not in self.runtime_options}
        return {
            "kind": kind,
            "encoder": self.name,
            "version": self.version,
            "options": feature_options,
            "data": dict(data),
            **extra,
        }

    def require_positive_ints(self, *names: str) -> None:
        for option in names:
            value = self.options[option]
            if not is_int(value) or value < 1:
                raise ValueError(f"encoder {self.name!r}: option {option} must be a positive int, got {value!r}")

    def _use(self, loader: Callable[..., Any], *args: Any) -> Any:
        """Get a heavy resource through its process-wide memoised ``loader``, counting the use."""
        self.model_uses += 1
        return loader(*args)


def fingerprints(task: Task) -> dict[str, str]:
    """Content hashes of all splits: a bag's vocabulary depends on every split, not just one."""
    return {split: task.fingerprint(split) for split in task.splits}


def check_pooling(pooling: str) -> None:
    if pooling not in BAG_POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {list(BAG_POOLINGS)}")


def cached(cache: FeatureCache, key: Mapping[str, Any], compute: Callable[[], Batch]) -> tuple[Batch, bool]:
    """``cache.get_or_compute`` that also tells whether the entry came from the cache."""
    computed = False

    def run() -> Batch:
        nonlocal computed
        computed = True
        return compute()

    return cache.get_or_compute(key, run), not computed
