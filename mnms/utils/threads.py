"""Torch's intra-op thread count, set for a block of code and restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the caller's setting.

    The setting is process-wide, hence the restore. Usable as a decorator
    (``@torch_threads(1)``) for code that must run single-threaded: the controller's
    tensors have a few dozen rows, and splitting them across threads costs more in
    synchronisation than it saves.
    """
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if previous != threads:
            torch.set_num_threads(previous)
