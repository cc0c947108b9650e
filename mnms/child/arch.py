"""The child architecture description: a plain mapping the search emits and the child builds.

One dataclass owns the vocabulary of what a child can be, so the search space, the
child model and the command line all validate against the same lists. The encoder
names and what each encoder supports (token vectors, a pretrained table, transformer
layers) are the encoder registry's own (``mnms.data.encoders``).

A child is the wide & deep classifier of Wong et al. (NeurIPS 2018): a deep tower
(encoder, optional convolution over its token vectors, pooling, MLP) whose logits are
added to a wide tower's (a sparse linear model over hashed n-grams), each tower with
its own learning rate and regularisation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mnms.data.encoders import ENCODERS, SENTENCE_TRANSFORMERS_PREFIX, encoder_class
from mnms.utils.config import ConfigError, is_int, is_number

MAX_HIDDEN_LAYERS = 3
MAX_CONV_WIDTH = 9
MAX_FINE_TUNE_LAYERS = 24
POOLINGS = ("mean", "sqrtn", "max")
WIDE = ("none", "words", "chars", "both")  # the wide tower's features: none, word n-grams, char n-grams, both
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "leaky_relu")
NORMALISATIONS = ("none", "batch", "layer")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


class ArchitectureError(ConfigError):
    """An architecture the child cannot build; the message names the field and the valid values."""


def _is_encoder(value: Any) -> bool:
    if isinstance(value, str) and value in ENCODERS:
        return True
    return isinstance(value, str) and value.startswith(SENTENCE_TRANSFORMERS_PREFIX) and len(value) > 3


@dataclass(frozen=True)
class Architecture:
    """Everything that defines one child classifier (the training budget lives in the trainer config).

    ``width_k`` is the width of hidden layer ``k``; widths of layers beyond
    ``hidden_layers`` are ignored, which lets the search space declare one flat
    decision per layer. ``conv_filters=0`` means no convolution (the ``conv_*`` fields
    are then ignored) and ``wide="none"`` no wide tower (``wide_*`` ignored).
    ``learning_rate`` and ``weight_decay`` train the deep tower, ``wide_learning_rate``
    and ``wide_l2`` the wide one, with the same ``optimizer``.
    """

    section: ClassVar[str] = "child.arch"

    encoder: str = "minilm"
    fine_tune: bool = False  # train the encoder's pretrained embedding table (bag encoders that have one)
    fine_tune_layers: int = 0  # train the top k transformer layers (minilm); lower layers' states are cached
    conv_filters: int = 0  # filters per n-gram width over the token vectors; 0 = no convolution
    conv_max_width: int = 3  # parallel filters of widths 1..conv_max_width (Kim 2014 style)
    conv_activation: str = "relu"
    conv_batch_norm: bool = False
    conv_dropout: float = 0.0
    pooling: str = "mean"  # over tokens (or the convolution's positions): mean, sqrt-n, max
    hidden_layers: int = 1
    width_1: int = 256
    width_2: int = 256
    width_3: int = 256
    activation: str = "relu"
    normalisation: str = "none"
    dropout: float = 0.1
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    wide: str = "none"
    wide_learning_rate: float = 0.01
    wide_l2: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_value(field.name, getattr(self, field.name))
        for name in ENCODER_DEPENDENT:
            if problem := incompatibility(self.encoder, name, getattr(self, name)):
                raise ArchitectureError(f"architecture {name}={getattr(self, name)!r}: {problem}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths of the hidden layers that exist."""
        return tuple(getattr(self, f"width_{k}") for k in range(1, self.hidden_layers + 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _one_of(options: tuple[str, ...]):
    return lambda v: v in options, f"one of {list(options)}"


@functools.cache
def _rules() -> dict[str, tuple[Any, str]]:
    return {
        "encoder": (_is_encoder, f"one of {list(ENCODERS)} or 'st:<sentence-transformers model>'"),
        "fine_tune": (lambda v: isinstance(v, bool), "true or false"),
        "fine_tune_layers": (
            lambda v: is_int(v) and 0 <= v <= MAX_FINE_TUNE_LAYERS,
            f"an integer from 0 to {MAX_FINE_TUNE_LAYERS}",
        ),
        "conv_filters": (lambda v: is_int(v) and 0 <= v <= 4096, "an integer from 0 (no convolution) to 4096"),
        "conv_max_width": (
            lambda v: is_int(v) and 1 <= v <= MAX_CONV_WIDTH,
            f"an integer from 1 to {MAX_CONV_WIDTH}",
        ),
        "conv_activation": _one_of(ACTIVATIONS),
        "conv_batch_norm": (lambda v: isinstance(v, bool), "true or false"),
        "conv_dropout": (lambda v: is_number(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
        "pooling": _one_of(POOLINGS),
        "hidden_layers": (
            lambda v: is_int(v) and 0 <= v <= MAX_HIDDEN_LAYERS,
            f"an integer from 0 to {MAX_HIDDEN_LAYERS}",
        ),
        **{
            f"width_{k}": (lambda v: is_int(v) and 1 <= v <= 16384, "an integer from 1 to 16384")
            for k in range(1, MAX_HIDDEN_LAYERS + 1)
        },
        "activation": _one_of(ACTIVATIONS),
        "normalisation": _one_of(NORMALISATIONS),
        "dropout": (lambda v: is_number(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
        "optimizer": _one_of(OPTIMIZERS),
        "learning_rate": (lambda v: is_number(v) and 0.0 < v <= 10.0, "a number in (0, 10]"),
        "weight_decay": (lambda v: is_number(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
        "batch_size": (lambda v: is_int(v) and 1 <= v <= 65536, "an integer from 1 to 65536"),
        "wide": _one_of(WIDE),
        "wide_learning_rate": (lambda v: is_number(v) and 0.0 < v <= 10.0, "a number in (0, 10]"),
        "wide_l2": (lambda v: is_number(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
    }


def check_value(name: str, value: Any) -> None:
    """Raise ArchitectureError unless ``value`` is buildable for architecture field ``name``.

    The search space calls this for every choice so a bad space fails before training.
    """
    rules = _rules()
    if name not in rules:
        raise ArchitectureError(f"unknown architecture key {name!r}; valid keys are {sorted(rules)}")
    accept, valid = rules[name]
    if not accept(value):
        raise ArchitectureError(f"architecture {name}={value!r} is invalid; it must be {valid}")


# Fields whose valid values depend on the encoder, and the value that suits every encoder.
ENCODER_DEPENDENT: dict[str, Any] = {"fine_tune": False, "fine_tune_layers": 0, "conv_filters": 0, "pooling": "mean"}


def incompatibility(encoder: str, name: str, value: Any) -> str | None:
    """Why ``encoder`` cannot build ``name=value`` (None when it can, or when the field does not depend on it).

    The search space asks this for every choice an encoder can reach, so an impossible
    combination is refused before anything trains rather than silently ignored.
    """
    if name not in ENCODER_DEPENDENT or value == ENCODER_DEPENDENT[name] or not _is_encoder(encoder):
        return None
    cls = encoder_class(encoder)
    if name == "fine_tune" and not cls.has_pretrained_table:
        return f"encoder {encoder!r} has no pretrained embedding table to fine-tune (its table always trains)"
    if name == "fine_tune_layers" and value > cls.transformer_layers:
        return f"encoder {encoder!r} has {cls.transformer_layers} transformer layers to fine-tune"
    if name in ("conv_filters", "pooling") and not cls.token_level:
        kind = "a convolution" if name == "conv_filters" else f"{value} pooling"
        return f"{kind} needs token vectors, and encoder {encoder!r} returns one vector per text"
    return None


def complete_arch(decisions: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The full architecture a child trains: the searched ``decisions`` over ``defaults`` for every other field."""
    return {**defaults, **decisions}
