"""The search space: validation, conditions, signature and size."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnms.data.encoders import ENCODERS
from mnms.data.encoders.bags import BagEncoder
from mnms.search.space import Decision, SearchSpace, SearchSpaceError

CONF = Path(__file__).resolve().parents[1] / "conf" / "search_space"


def load(name: str) -> SearchSpace:
    return SearchSpace.from_config(OmegaConf.load(CONF / f"{name}.yaml"))


def enumerate_space(space: SearchSpace) -> list[dict]:
    """All architectures, by brute force over every combination (small spaces only)."""
    found = set()
    for values in itertools.product(*(d.choices for d in space.decisions)):
        arch = {}
        for decision, value in zip(space.decisions, values):
            if decision.active(arch):
                arch[decision.name] = value
        found.add(tuple(sorted(arch.items())))
    return [dict(a) for a in found]


NESTED = {
    "decisions": [
        {"name": "encoder", "choices": ["minilm", "words", "char-ngrams"]},
        {"name": "pooling", "choices": ["mean", "sqrtn"], "when": {"encoder": ["words", "char-ngrams"]}},
        {"name": "hidden_layers", "choices": [0, 1, 2]},
        {"name": "width_1", "choices": [64, 128], "when": {"hidden_layers": [1, 2]}},
        {"name": "width_2", "choices": [64, 128, 256], "when": {"hidden_layers": [2], "pooling": ["sqrtn"]}},
        {"name": "dropout", "choices": [0.0, 0.5]},
    ]
}


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"decisions": []}, "no decisions"),
        ({}, "missing key(s) ['decisions']"),
        ({"decisions": [], "extra": 1}, "unknown key(s) ['search_space.extra']"),
        ({"decisions": [{"name": "dropout", "choices": []}]}, "'dropout' has no choices"),
        ({"decisions": [{"name": "dropout", "choices": [0.1, 0.3, 0.1]}]}, "lists 0.1 more than once"),
        (
            {"decisions": [{"name": "dropout", "choices": [0.1]}, {"name": "dropout", "choices": [0.3]}]},
            "'dropout' is listed twice",
        ),
        (
            {"decisions": [{"name": "width_1", "choices": [64], "when": {"hidden_layer": [1]}}]},
            "'hidden_layer', which is an unknown decision",
        ),
        (
            {
                "decisions": [
                    {"name": "width_1", "choices": [64], "when": {"hidden_layers": [1]}},
                    {"name": "hidden_layers", "choices": [0, 1]},
                ]
            },
            "'hidden_layers', which is a later decision",
        ),
        (
            {"decisions": [{"name": "dropout", "choices": [0.1], "when": {"dropout": [0.1]}}]},
            "'dropout', which is itself",
        ),
        (
            {
                "decisions": [
                    {"name": "hidden_layers", "choices": [0, 1]},
                    {"name": "width_1", "choices": [64], "when": {"hidden_layers": [1, 2]}},
                ]
            },
            "2 is not a choice of 'hidden_layers'",
        ),
        ({"decisions": [{"name": "dropout", "choices": [0.1, 1.5]}]}, "dropout=1.5 is invalid"),
        ({"decisions": [{"name": "encoder", "choices": ["minilm", "bogus"]}]}, "encoder='bogus' is invalid"),
        ({"decisions": [{"name": "depth", "choices": [1]}]}, "unknown architecture key 'depth'"),
        ({"decisions": [{"name": "dropout", "choice": [0.1]}]}, "unknown key(s) ['search_space.decisions.0.choice']"),
        ({"decisions": [{"name": "dropout", "choices": 0.1}]}, "'choices' must be a list"),
        ({"decisions": [{"name": "fine_tune", "choices": [True, 1]}]}, "fine_tune=1 is invalid"),
    ],
)
def test_invalid_spaces_raise_one_error_naming_the_problem(config, fragment):
    with pytest.raises(SearchSpaceError) as error:
        SearchSpace.from_config(config)
    assert fragment in str(error.value)
    assert isinstance(error.value, ValueError)


def test_shipped_spaces_load_and_round_trip():
    for name in ("default", "small"):
        space = load(name)
        again = SearchSpace.from_config(space.to_config())
        assert again.to_config() == space.to_config()
        assert again.signature() == space.signature()
    default = load("default")
    assert default.names[0] == "encoder"
    assert default["learning_rate"].choices == (0.0003, 0.001, 0.003, 0.01)
    assert default["fine_tune"].choices == (False, True)
    assert default["wide"].choices == ("none", "words", "chars", "both")


def test_active_follows_conditions_on_earlier_choices():
    space = load("default")
    assert space["encoder"].active({})
    assert space["fine_tune"].active({"encoder": "fr-vectors"})
    assert not space["fine_tune"].active({"encoder": "minilm"})
    assert not space["pooling"].active({"encoder": "minilm"})
    assert space["pooling"].active({"encoder": "words"})
    assert not space["width_2"].active({"hidden_layers": 1})
    assert space["width_2"].active({"hidden_layers": 2})
    assert not space["width_2"].active({})  # an undecided condition is false


def test_is_valid_requires_exactly_the_active_decisions():
    space = SearchSpace.from_config(NESTED)
    good = {"encoder": "minilm", "hidden_layers": 1, "width_1": 64, "dropout": 0.0}
    assert space.is_valid(good)
    assert not space.is_valid({**good, "pooling": "mean"})  # inactive for minilm
    assert not space.is_valid({k: v for k, v in good.items() if k != "width_1"})  # missing
    assert not space.is_valid({**good, "width_1": 512})  # not a choice
    assert not space.is_valid({**good, "batch_size": 32})  # not a decision
    assert space.is_valid(
        {"encoder": "words", "pooling": "sqrtn", "hidden_layers": 2, "width_1": 128, "width_2": 256, "dropout": 0.5}
    )


def test_signature_is_stable_and_changes_with_the_space():
    base = SearchSpace.from_config(NESTED)
    assert base.signature() == SearchSpace.from_config(NESTED).signature()
    changed_choice = {"decisions": [dict(d) for d in NESTED["decisions"]]}
    changed_choice["decisions"][-1] = {"name": "dropout", "choices": [0.0, 0.3]}
    reordered = {"decisions": [NESTED["decisions"][-1], *NESTED["decisions"][:-1]]}
    changed_condition = {"decisions": [dict(d) for d in NESTED["decisions"]]}
    changed_condition["decisions"][3] = {**NESTED["decisions"][3], "when": {"hidden_layers": [2]}}
    signatures = {base.signature()} | {
        SearchSpace.from_config(c).signature() for c in (changed_choice, reordered, changed_condition)
    }
    assert len(signatures) == 4
    assert load("small").signature() != load("default").signature()


def test_size_counts_distinct_architectures():
    small = load("small")
    assert small.size() == 3 * (1 + 2) * 2 == len(enumerate_space(small))
    nested = SearchSpace.from_config(NESTED)
    assert nested.size() == len(enumerate_space(nested))
    assert all(nested.is_valid(arch) for arch in enumerate_space(nested))
    # default: encoder branch x hidden layers x the unconditional rest x the wide tower.
    # Encoder branch: minilm with 3 fine-tuned-layer choices; minilm-tokens and fr-vectors
    # with fine_tune 2 x convolution x pooling 3; char-ngrams pooling 3; words convolution
    # x pooling 3. Convolution: none, or 3 filter counts x widths 3 x activation 3 x
    # batch norm 2 x dropout 3. Hidden: none, or widths x activation 4 x normalisation 3.
    conv = 1 + 3 * (3 * 3 * 2 * 3)
    encoders = 3 + 2 * (2 * conv * 3) + 3 + conv * 3
    hidden = 1 + (4 + 16 + 64) * 4 * 3
    wide = 1 + 3 * (4 * 3)
    assert load("default").size() == encoders * hidden * (4 * 4 * 4 * 3 * 3) * wide


def test_bool_and_int_choices_are_not_confused():
    decision = Decision("fine_tune", (False, True))
    assert decision.index(True) == 1
    with pytest.raises(SearchSpaceError):
        decision.index(1)


def test_the_default_space_conditions_follow_the_encoders_capabilities():
    """The four `when` lists on `encoder` restate what the encoder classes say; they must agree both ways."""
    space = load("default")
    offered = set(space["encoder"].choices)
    tables = {name for name in offered if ENCODERS[name].has_pretrained_table}
    bags = {name for name in offered if issubclass(ENCODERS[name], BagEncoder)}
    layers = {name for name in offered if ENCODERS[name].transformer_layers}
    assert set(space["fine_tune"].when["encoder"]) == tables
    assert set(space["pooling"].when["encoder"]) == bags
    assert set(space["fine_tune_layers"].when["encoder"]) == layers
    space.check_buildable()  # every listed encoder builds every choice
    # ... and every encoder able to is listed, but char n-grams for a convolution: deliberately
    # left out (no token order worth convolving in up to 1024 n-grams per text).
    assert space.unoffered() == [("conv_filters", "char-ngrams")]
    assert load("small").unoffered() == []


def test_an_encoder_left_out_of_a_when_list_it_qualifies_for_is_found():
    space = SearchSpace.from_config(
        {
            "decisions": [
                {"name": "encoder", "choices": ["minilm", "words", "char-ngrams"]},
                {"name": "pooling", "choices": ["mean", "max"], "when": {"encoder": ["words"]}},
            ]
        }
    )
    assert space.unoffered() == [("pooling", "char-ngrams")]
