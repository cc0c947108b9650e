"""The child architecture description: a plain mapping the search emits and the child builds.

One dataclass owns the vocabulary of what a child can be, so the search space, the
child model and the command line all validate against the same lists. The encoder
names and poolings are the encoder registry's own (``mnms.data.encoders``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mnms.data.encoders import ENCODERS, POOLINGS, SENTENCE_TRANSFORMERS_PREFIX
from mnms.utils.config import ConfigError, is_int, is_number

MAX_HIDDEN_LAYERS = 3
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
    decision per layer.
    """

    section: ClassVar[str] = "child.arch"

    encoder: str = "minilm"
    fine_tune: bool = False
    pooling: str = "mean"
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

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_value(field.name, getattr(self, field.name))

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


def complete_arch(decisions: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The full architecture a child trains: the searched ``decisions`` over ``defaults`` for every other field."""
    return {**defaults, **decisions}
