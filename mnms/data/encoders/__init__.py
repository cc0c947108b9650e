"""Registry of text encoders (the "embedding module" decision of the architecture search).

``get_encoder(name, cfg.encoders)`` returns a process-wide memoised encoder; heavy models load
lazily on first use, so an encoder whose features are all cached never loads its model.
Adding an encoder is a module and a line in ``ENCODERS``; its options and their defaults
reach the ``encoders`` config section from the class (``encoder_defaults``), and the
search space offers it once it is listed as a choice (CONTRIBUTING.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mnms.data.encoders.base import BAG_POOLINGS, Batch, EncodedTask, Encoder
from mnms.data.encoders.fr_vectors import FrVectorsEncoder
from mnms.data.encoders.hashed import CharNgramEncoder, WordEncoder
from mnms.data.encoders.sentence import MiniLMEncoder, SentenceEncoder
from mnms.data.encoders.wordpiece import MiniLMWordpieceEncoder
from mnms.utils.config import ConfigError, plain

__all__ = [
    "ENCODERS",
    "BAG_POOLINGS",
    "Batch",
    "EncodedTask",
    "Encoder",
    "encoder_class",
    "encoder_defaults",
    "encoder_resume_settings",
    "get_encoder",
]

# name -> class; every class is built as cls(name, options).
ENCODERS: dict[str, type[Encoder]] = {
    "minilm": MiniLMEncoder,
    "minilm-tokens": MiniLMWordpieceEncoder,
    "fr-vectors": FrVectorsEncoder,
    "char-ngrams": CharNgramEncoder,
    "words": WordEncoder,
}
SENTENCE_TRANSFORMERS_PREFIX = "st:"  # "st:<model name or local path>": any sentence-transformers model

_INSTANCES: dict[tuple[str, str, str], Encoder] = {}


def encoder_class(name: str) -> type[Encoder]:
    """The class that builds encoder ``name`` (any ``st:<model>`` is a SentenceEncoder): what it supports."""
    return ENCODERS.get(name, SentenceEncoder)


def get_encoder(name: str, options: Mapping[str, Mapping] | None = None, device: str = "cpu") -> Encoder:
    """The encoder called ``name``, configured by ``options[name]`` (e.g. ``cfg.encoders``).

    ``st:<model>`` names take ``options[name]`` or else ``options["st"]``. Instances are shared
    per (name, options, device) within a process; ``device`` is where a heavy model runs
    while encoding (features are returned on the CPU either way).
    """
    options = plain(options or {})
    if name.startswith(SENTENCE_TRANSFORMERS_PREFIX) and len(name) > len(SENTENCE_TRANSFORMERS_PREFIX):
        own = options.get(name, options.get("st", {}))
    elif name in ENCODERS:
        own = options.get(name, {})
    else:
        raise ConfigError(
            f"unknown encoder {name!r}; valid: {list(ENCODERS)} or "
            f"'{SENTENCE_TRANSFORMERS_PREFIX}<sentence-transformers model>'"
        )
    memo_key = (name, json.dumps(own, sort_keys=True), device)
    if memo_key not in _INSTANCES:
        encoder = encoder_class(name)(name, own)
        encoder.device = device
        _INSTANCES[memo_key] = encoder
    return _INSTANCES[memo_key]


def encoder_defaults() -> dict[str, dict[str, Any]]:
    """Every encoder's options and their defaults, by name (``st`` for any ``st:<model>``): the ``encoders`` section."""
    return {**{name: dict(cls.defaults) for name, cls in ENCODERS.items()}, "st": dict(SentenceEncoder.defaults)}


def encoder_resume_settings(options: Mapping[str, Mapping] | None = None) -> dict[str, dict[str, Any]]:
    """Every encoder's options as a resumed search must share them: ``options`` over the defaults,
    without each class's ``free_options`` (an ``st:<model>`` section given in ``options`` included)."""
    options = plain(options or {})
    defaults = plain(encoder_defaults())
    return {
        name: {
            key: value
            for key, value in {**defaults.get(name, defaults["st"]), **options.get(name, {})}.items()
            if key not in encoder_class(name).free_options
        }
        for name in {**defaults, **options}
    }
