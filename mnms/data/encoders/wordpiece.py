"""Bags of MiniLM wordpieces over the model's own input-embedding table (no transformer run)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mnms.data.encoders.bags import BagEncoder, Ragged, first_words
from mnms.data.encoders.sentence import minilm_dir


@functools.cache
def load_tokenizer(model_dir: str) -> Any:
    """The model's ``tokenizer.json`` without its padding/truncation to 128 (bags need neither)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@functools.cache
def load_word_embeddings(model_dir: str) -> torch.Tensor:
    """The transformer's input word-embedding matrix (30522 x 384 for MiniLM), read lazily."""
    from safetensors import safe_open

    path = Path(model_dir) / "model.safetensors"
    with safe_open(str(path), framework="pt") as weights:
        names = [k for k in weights.keys() if k.endswith("word_embeddings.weight")]  # noqa: SIM118 - safe_open is no dict
        if len(names) != 1:
            raise ValueError(f"expected one *word_embeddings.weight in {path}, found {names}")
        return weights.get_tensor(names[0]).float()


class MiniLMWordpieceEncoder(BagEncoder):
    """``minilm-tokens``: MiniLM's wordpiece ids (no special tokens) pooled over its input-embedding table."""

    has_pretrained_table = True

    @property
    def model_dir(self) -> str:
        return minilm_dir()

    def raw_ids(self, texts: Sequence[str]) -> Ragged:
        tokenizer = self._use(load_tokenizer, self.model_dir)
        heads = [first_words(t, self.options["max_tokens"]) for t in texts]
        encodings = tokenizer.encode_batch(heads, add_special_tokens=False)
        return Ragged.from_lists(e.ids for e in encodings)

    def pretrained_table(self) -> torch.Tensor:
        return load_word_embeddings(self.model_dir)
