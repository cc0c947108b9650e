"""A DataModule over one encoded task whose batches are slices of in-memory tensors.

Children are tiny and features are precomputed, so DataLoader workers and per-example
collation would cost more than the training itself (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytorch_lightning as pl
import torch

Batch = dict[str, torch.Tensor]
# Evaluation needs no gradients, so it takes larger batches than training, but not so large
# that a wide convolution over long texts holds gigabytes of activations at once.
EVAL_BATCH_SIZE = 256


class InMemoryBatches:
    """Re-iterable batches of a dict of tensors (first dim = example) plus ``"label"``.

    Lightning needs ``__iter__`` and ``__len__``; a plain list of batches is rejected.
    Shuffling draws from ``generator`` so a seeded child sees the same order every run.
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors disagree on the number of examples: {sizes}")
        if shuffle and generator is None:
            raise ValueError("shuffle=True needs a seeded generator for reproducible order")
        self.tensors = dict(tensors)
        self.size = next(iter(sizes.values()))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        # A trailing batch of one is dropped when shuffling: batch norm cannot train on it.
        return full + (1 if rest > 1 or (rest == 1 and not self.shuffle) else 0)

    def __iter__(self) -> Iterator[Batch]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=self.generator)
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                index = order[start : start + self.batch_size]
                yield {name: t[index] for name, t in self.tensors.items()}
        else:
            for start in range(0, self.size, self.batch_size):
                yield {name: t[start : start + self.batch_size] for name, t in self.tensors.items()}


class TaskDataModule(pl.LightningDataModule):
    """Train/validation/test batches of one task's encoded splits.

    ``splits`` maps split name to the encoder's tensors for that split; ``labels`` maps
    split name to int64 label tensors. Evaluation uses large batches: no gradients, so
    memory allows it and fewer Python iterations are faster.
    """

    def __init__(
        self,
        splits: Mapping[str, Batch],
        labels: Mapping[str, torch.Tensor],
        batch_size: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.splits = {name: {**tensors, "label": labels[name]} for name, tensors in splits.items()}
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def train_dataloader(self) -> InMemoryBatches:
        return InMemoryBatches(self.splits["train"], self.batch_size, shuffle=True, generator=self.generator)

    def val_dataloader(self) -> InMemoryBatches:
        return InMemoryBatches(self.splits["validation"], EVAL_BATCH_SIZE)

    def test_dataloader(self) -> InMemoryBatches:
        return InMemoryBatches(self.splits["test"], EVAL_BATCH_SIZE)
