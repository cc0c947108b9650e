"""What a child's architecture asks of the encoders: its deep tower's input and its wide tower's n-grams.

The one place that maps architecture fields to encoder calls, so ``mode=child``, a search,
the benchmarks and a saved model's predictions encode a child the same way (and share
the same cached features). A saved model encodes new texts with the vocabularies its
child trained with (``vocabularies``, passed back as ``child_inputs(vocabs=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mnms.child.arch import Architecture
from mnms.data.encoders import Batch, EncodedTask, Encoder, encoder_class, get_encoder
from mnms.data.encoders.bags import BagEncoder
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task

# The wide tower's features: the hashed bags of these encoders (their options apply).
WIDE_ENCODERS: dict[str, tuple[str, ...]] = {
    "none": (),
    "words": ("words",),
    "chars": ("char-ngrams",),
    "both": ("words", "char-ngrams"),
}


@dataclass
class ChildInputs:
    """A child's encoded splits (deep tower tensors, plus ``wide_ids`` with a wide tower)."""

    deep: EncodedTask
    splits: dict[str, Batch]
    wide_rows: int  # rows of the wide tower's table; 0 = no wide tower
    from_cache: bool


Vocabularies = Mapping[str, torch.Tensor]  # bag encoder name -> its bag's vocab (raw id of compact id i+1)


def encoder_names(arch: Architecture) -> list[str]:
    """Every encoder ``arch`` uses: its deep tower's, then its wide tower's (no repeats)."""
    return list(dict.fromkeys([arch.encoder, *WIDE_ENCODERS[arch.wide]]))


def vocabularies(
    task: Task, arch: Architecture, cache: FeatureCache, options: Mapping[str, Any] | None
) -> Vocabularies:
    """The vocabulary of every bag encoder ``arch`` uses on ``task``: what a saved model keeps
    so that new texts get the ids its tables were trained on."""
    names = [name for name in encoder_names(arch) if issubclass(encoder_class(name), BagEncoder)]
    return {name: get_encoder(name, options).bag(task, cache)[0]["vocab"] for name in names}


def _encoder(name: str, options: Mapping[str, Any] | None, device: str, vocabs: Vocabularies | None) -> Encoder:
    """``get_encoder``, with the saved vocabulary fixed when a trained model's ``vocabs`` are given."""
    encoder = get_encoder(name, options, device)
    if vocabs is None or not isinstance(encoder, BagEncoder):
        return encoder
    if name not in vocabs:
        raise ValueError(f"no vocabulary for bag encoder {name!r} among the saved ones {sorted(vocabs)}")
    return encoder.with_vocab(vocabs[name])


def encode_deep(
    task: Task,
    arch: Architecture,
    cache: FeatureCache,
    options: Mapping[str, Any] | None,
    device: str,
    vocabs: Vocabularies | None = None,
) -> EncodedTask:
    """The deep tower's input: transformer top layers, token vectors, or one vector per text.

    Token vectors only when something needs them (a convolution or max pooling): pooling a
    bag up front is much cheaper than looking up every token at every step.
    """
    encoder = _encoder(arch.encoder, options, device, vocabs)
    if arch.fine_tune_layers:
        return encoder.encode_top_layers(task, arch.fine_tune_layers, cache)
    if arch.conv_filters or arch.pooling == "max":
        return encoder.encode_tokens(task, fine_tune=arch.fine_tune, cache=cache)
    return encoder.encode(task, fine_tune=arch.fine_tune, pooling=arch.pooling, cache=cache)


def encode_wide(
    task: Task, wide: str, cache: FeatureCache, options: Mapping[str, Any] | None, vocabs: Vocabularies | None = None
) -> tuple[dict[str, torch.Tensor], int, bool]:
    """Per split, the wide tower's n-gram ids [N, L] (0 = padding), the table's rows, and
    whether every bag came from the cache. With ``both``, the char n-gram ids follow the
    word n-gram ids in one id space."""
    parts: list[dict[str, torch.Tensor]] = []
    rows, from_cache = 1, True
    for name in WIDE_ENCODERS[wide]:
        entry, hit = _encoder(name, options, "cpu", vocabs).bag(task, cache)
        offset = rows - 1
        parts.append({s: torch.where(entry[f"{s}.ids"] != 0, entry[f"{s}.ids"] + offset, 0) for s in task.splits})
        rows += len(entry["vocab"])
        from_cache = from_cache and hit
    return {s: torch.cat([p[s] for p in parts], dim=1) for s in task.splits}, rows, from_cache


def child_inputs(
    task: Task,
    arch: Architecture,
    cache: FeatureCache,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    vocabs: Vocabularies | None = None,
) -> ChildInputs:
    """Everything ``arch`` trains on for ``task`` (or, with a saved model's ``vocabs``,
    predicts from), from the feature cache where possible."""
    deep = encode_deep(task, arch, cache, options, device, vocabs)
    splits = {split: dict(tensors) for split, tensors in deep.splits.items()}
    if arch.wide == "none":
        return ChildInputs(deep, splits, 0, deep.from_cache)
    wide_ids, rows, wide_hit = encode_wide(task, arch.wide, cache, options, vocabs)
    for split, ids in wide_ids.items():
        splits[split]["wide_ids"] = ids
    return ChildInputs(deep, splits, rows, deep.from_cache and wide_hit)
