"""Bag-of-ids machinery shared by every encoder whose input layer is an embedding table.

Pipeline: texts -> raw ids per text (table rows or hash buckets) -> vocabulary of the ids the
task uses -> compacted ids (row 0 = padding/unknown) padded to [N, L] -> cached. The table is
compacted to that vocabulary so a child's table stays small and fine-tuning is cheap.
"""

from __future__ import annotations

import copy
import hashlib
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mnms.data.encoders.base import Batch, DenseInput, EncodedTask, Encoder, Task, cached, check_pooling, fingerprints
from mnms.data.feature_cache import FeatureCache


class Ragged(NamedTuple):
    """Variable-length id lists stored flat: ``values`` concatenated, ``lengths`` per text."""

    values: np.ndarray  # int64
    lengths: np.ndarray  # int64 [N]

    @classmethod
    def from_lists(cls, rows: Iterable[Sequence[int]]) -> Ragged:
        rows = list(rows)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, lengths)

    def row_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def col_index(self) -> np.ndarray:
        return np.arange(len(self.values)) - np.repeat(np.cumsum(self.lengths) - self.lengths, self.lengths)

    def truncated(self, max_len: int) -> Ragged:
        """Each text's first ``max_len`` ids."""
        return Ragged(self.values[self.col_index() < max_len], np.minimum(self.lengths, max_len))

    def kept(self, keep: np.ndarray) -> Ragged:
        """Only the ids where the boolean ``keep`` (aligned with ``values``) is true."""
        lengths = np.bincount(self.row_index()[keep], minlength=len(self.lengths)).astype(np.int64)
        return Ragged(self.values[keep], lengths)

    def compacted(self, vocab: np.ndarray) -> Ragged:
        """Ids as 1 + position in the sorted ``vocab``; ids outside it are dropped from the bag
        (their row would be the zero padding row, so they would only dilute the pooled vector)."""
        pos = np.searchsorted(vocab, self.values)
        found = pos < len(vocab)
        found[found] = vocab[pos[found]] == self.values[found]
        return Ragged(pos + 1, self.lengths).kept(found)

    def padded(self, width: int) -> torch.Tensor:
        """int64 [N, width] (``width`` >= the longest text), 0 = padding."""
        out = np.zeros((len(self.lengths), width), dtype=np.int64)
        out[self.row_index(), self.col_index()] = self.values
        return torch.from_numpy(out)


def first_words(text: str, n: int) -> str:
    """``text`` cut after its first ``n`` whitespace-separated words. Every tokeniser used here
    makes at least one token per word, so no token among the first ``n`` is lost, while long
    documents (newsgroup posts run to 160k characters) are not tokenised in full."""
    parts = text.split(maxsplit=n)
    return text if len(parts) <= n else text[: len(text) - len(parts[n])]


def bag_weights(ids: torch.Tensor, pooling: str) -> torch.Tensor:
    """Per-id weights making the weighted sum a mean (1/n) or a sqrt-n pooling (1/sqrt n)."""
    check_pooling(pooling)
    real = (ids != 0).float()
    n = real.sum(dim=1, keepdim=True).clamp(min=1.0)
    return real / (n if pooling == "mean" else n.sqrt())


def pool(ids: torch.Tensor, weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Weighted sum of table rows per text, without materialising [N, L, D].

    A sparse [N, V] matrix of the weights times the table, chosen when EmbeddingBag's
    backward with per-sample weights was the slower; on torch 2.13 it no longer is
    (docs/benchmarks.md, "Why the code does it this way").
    """
    real = weights != 0
    rows = real.nonzero()[:, 0]
    # Indices are in range by construction (ids index the compacted table), so skip the checks.
    bags = torch.sparse_coo_tensor(
        torch.stack([rows, ids[real]]), weights[real], (ids.shape[0], table.shape[0]), check_invariants=False
    )
    return torch.sparse.mm(bags, table)


def trimmed(ids: torch.Tensor) -> torch.Tensor:
    """``ids`` [B, L] cut to the batch's longest text: ids are left-aligned, and cached
    splits are padded to their longest text, so most batches carry mostly padding."""
    longest = int((ids != 0).sum(dim=1).max()) if ids.numel() else 0
    return ids[:, : max(longest, 1)]


class TokenInput(nn.Module):
    """Token-level input layer: the table rows of ``batch["ids"]`` and their mask, for a
    convolution or a pooling that needs every token (max). Row 0 (padding) is all zeros."""

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        ids = trimmed(batch["ids"])
        return self.table(ids), ids != 0


class BagInput(nn.Module):
    """Trainable input layer: the weighted bag of ``batch["ids"]`` over an embedding table
    (row 0 = padding, never in a bag, so never trained)."""

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, batch: Batch) -> torch.Tensor:
        return pool(batch["ids"], batch["weights"], self.table.weight)


TableFactory = Callable[[], nn.Embedding]


class BagEncoder(Encoder):
    """Base for bag encoders. Subclasses provide ``raw_ids`` and, if ``has_pretrained_table``,
    ``pretrained_table``.

    Pretrained tables are compacted over all splits (rows carry no label information); without
    ``fine_tune`` the bag is pooled up front into dense, cached features. From-scratch tables
    take their vocabulary from train only (ids seen at least ``min_count`` times), are always
    trainable (``fine_tune`` is moot) and are randomly initialised with ``dim`` columns from
    torch's global RNG at ``make_input_layer`` time, so child seeding controls them.
    """

    defaults = {"max_tokens": 256}  # tokens (or ids) kept per text; the rest of the text is dropped
    runtime_options = frozenset({"dim"})
    token_level = True

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.require_positive_ints("max_tokens")
        self.vocab: torch.Tensor | None = None  # a trained model's vocabulary (with_vocab); None: the task's own

    def with_vocab(self, vocab: torch.Tensor) -> BagEncoder:
        """This encoder with ``vocab`` (a bag entry's ``vocab``) fixed, for texts a saved model predicts.

        The vocabulary is then not derived from the texts: a new text's ids outside it are
        dropped, exactly as the ids of a test text the trained child never saw were.
        """
        fitted = copy.copy(self)
        fitted.vocab = vocab
        return fitted

    def cache_key(self, kind: str, data: Mapping[str, str], **extra: Any) -> dict[str, Any]:
        key = super().cache_key(kind, data, **extra)
        if self.vocab is not None:
            key["vocab"] = hashlib.sha256(self.vocab.numpy().tobytes()).hexdigest()
        return key

    @abstractmethod
    def raw_ids(self, texts: Sequence[str]) -> Ragged:
        """Per text, raw int64 ids (pretrained table rows or hash buckets) of at least its first
        ``max_tokens`` tokens (use :func:`first_words`); tokens without a table row dropped."""

    def pretrained_table(self) -> torch.Tensor:
        """The full pretrained float32 table indexed by raw id (only if ``has_pretrained_table``)."""
        raise NotImplementedError(f"encoder {self.name!r} has no pretrained table")

    def bag(self, task: Task, cache: FeatureCache) -> tuple[Batch, bool]:
        """The cached bag entry: ``<split>.ids`` [N, L], ``vocab`` (raw id of compact id i+1) and,
        for pretrained tables, ``table`` [len(vocab)+1, D] with a zero row 0."""
        return cached(cache, self.cache_key("bag", fingerprints(task)), lambda: self._compute_bag(task))

    def _compute_bag(self, task: Task) -> Batch:
        max_tokens = self.options["max_tokens"]
        raw = {split: self.raw_ids(data.texts).truncated(max_tokens) for split, data in task.splits.items()}
        if self.vocab is not None:
            vocab = self.vocab.numpy()
        elif self.has_pretrained_table:
            vocab = np.unique(np.concatenate([r.values for r in raw.values()]))
        else:
            ids, counts = np.unique(raw["train"].values, return_counts=True)
            vocab = ids[counts >= self.options["min_count"]]
        compact = {split: r.compacted(vocab) for split, r in raw.items()}
        width = max([1, *(int(r.lengths.max(initial=0)) for r in compact.values())])
        entry = {f"{split}.ids": r.padded(width) for split, r in compact.items()}
        entry["vocab"] = torch.from_numpy(vocab)
        if self.has_pretrained_table:
            rows = self._use(self.pretrained_table)[torch.from_numpy(vocab)]
            entry["table"] = torch.cat([rows.new_zeros(1, rows.shape[1]), rows]).float()
        return entry

    def encode(self, task: Task, *, fine_tune: bool, pooling: str, cache: FeatureCache) -> EncodedTask:
        check_pooling(pooling)
        if self.has_pretrained_table and not fine_tune:
            return self._encode_pooled(task, pooling, cache)
        entry, from_cache = self.bag(task, cache)
        splits = {
            split: {"ids": entry[f"{split}.ids"], "weights": bag_weights(entry[f"{split}.ids"], pooling)}
            for split in task.splits
        }
        make_table, dim = self._table(entry, trainable=True)
        return EncodedTask(splits, dim, lambda: BagInput(make_table()), from_cache)

    def encode_tokens(self, task: Task, *, fine_tune: bool, cache: FeatureCache) -> EncodedTask:
        """The cached bag's ids, looked up per token by the input layer (a pretrained
        table trains only with ``fine_tune``; a from-scratch one always does)."""
        entry, from_cache = self.bag(task, cache)
        splits = {split: {"ids": entry[f"{split}.ids"]} for split in task.splits}
        make_table, dim = self._table(entry, trainable=fine_tune or not self.has_pretrained_table)
        return EncodedTask(splits, dim, lambda: TokenInput(make_table()), from_cache, token_level=True)

    def _table(self, entry: Batch, *, trainable: bool) -> tuple[TableFactory, int]:
        """A factory of fresh embedding tables for the cached bag ``entry``, and their width.

        A pretrained table is a clone of the cached rows (training must not touch them); a
        from-scratch one has ``dim`` columns drawn from torch's global RNG when the factory
        is called, so child seeding controls it.
        """
        if self.has_pretrained_table:
            table = entry["table"]
            return lambda: nn.Embedding.from_pretrained(
                table.clone(), freeze=not trainable, padding_idx=0
            ), table.shape[1]
        rows, dim = len(entry["vocab"]) + 1, self.options["dim"]
        return lambda: nn.Embedding(rows, dim, padding_idx=0), dim

    def _encode_pooled(self, task: Task, pooling: str, cache: FeatureCache) -> EncodedTask:
        def compute() -> Batch:
            entry, _ = self.bag(task, cache)
            return {
                f"{split}.x": pool(entry[f"{split}.ids"], bag_weights(entry[f"{split}.ids"], pooling), entry["table"])
                for split in task.splits
            }

        entry, from_cache = cached(cache, self.cache_key("pooled", fingerprints(task), pooling=pooling), compute)
        splits = {split: {"x": entry[f"{split}.x"]} for split in task.splits}
        dim = next(iter(splits.values()))["x"].shape[1]
        return EncodedTask(splits=splits, dim=dim, make_input_layer=DenseInput, from_cache=from_cache)
