"""A crafted pickle: what a hostile ``.pt`` file could hold instead of tensors."""

from __future__ import annotations

from pathlib import Path

import torch


class WritesAFile:
    """Unpickling this opens (creates) a file: a stand-in for code a crafted file could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def save_crafted(target: Path, marker: Path, **keys) -> None:
    """``torch.save`` ``keys`` plus the crafted object to ``target``: loading it unsafely creates ``marker``."""
    torch.save({**keys, "payload": WritesAFile(marker)}, target)
