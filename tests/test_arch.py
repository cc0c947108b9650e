"""The architecture vocabulary: what a child can be, and the errors for what it cannot."""

import pytest

from mnms.child.arch import ACTIVATIONS, OPTIMIZERS, Architecture, ArchitectureError, check_value
from mnms.utils.config import ConfigError, from_config


def test_defaults_are_valid_and_widths_follow_hidden_layers() -> None:
    arch = Architecture(hidden_layers=2, width_1=64, width_2=32, width_3=8)
    assert arch.widths == (64, 32)
    assert Architecture(hidden_layers=0).widths == ()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("encoder", "glove", "minilm"),
        ("activation", "softsign", "relu"),
        ("optimizer", "lion", "adamw"),
        ("hidden_layers", 4, "0 to 3"),
        ("hidden_layers", True, "an integer"),
        ("dropout", 1.0, "[0, 1)"),
        ("normalisation", "group", "layer"),
        ("learning_rate", 0, "(0, 10]"),
    ],
)
def test_invalid_values_name_field_value_and_valid_options(field, value, fragment) -> None:
    with pytest.raises(ConfigError) as error:
        from_config(Architecture, {field: value})
    message = str(error.value)
    assert field in message and repr(value) in message and fragment in message


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['child.arch.widht_1'\].*width_1"):
        from_config(Architecture, {"widht_1": 3})


def test_sentence_transformers_names_are_accepted() -> None:
    check_value("encoder", "st:sentence-transformers/paraphrase-MiniLM-L3-v2")
    with pytest.raises(ArchitectureError):
        check_value("encoder", "st:")


def test_child_builds_every_activation_and_optimizer() -> None:
    from lightning_modules.child_module import _ACTIVATIONS, _OPTIMIZERS

    assert set(_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(_OPTIMIZERS) == set(OPTIMIZERS)
