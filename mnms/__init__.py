"""mnms: Multitask Neural Model Search for text classification."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mnms.utils.version import VERSION

__version__ = VERSION
__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from mnms.model.predictor import Model


def load_model(folder: str | Path, cache_dir: str | Path | None = None) -> Model:
    """The model ``mode=child`` saved in ``folder`` (``<run dir>/model``): ``load_model(folder).predict(texts)``.

    Imported on first use, so ``import mnms`` stays light. ``cache_dir``: a feature cache
    folder, so texts predicted again are not encoded again (None: in memory only).
    """
    from mnms.model.predictor import load_model as load

    return load(folder, cache_dir)
