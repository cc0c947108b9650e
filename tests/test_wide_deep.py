"""The wide & deep child: its decisions, their checks, its towers, and how a child is scored.

Unit tests on small tensors for the towers; real encoders, real tasks and a real Lightning
Trainer for everything a child's reward depends on.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lightning_modules.trainer
import mnms.child.inputs
from lightning_modules.child_module import ChildClassifier, TokenPooling, masked_pool
from lightning_modules.trainer import evaluate_child
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig, resolve_device
from mnms.child.inputs import child_inputs, encode_wide
from mnms.data.encoders import get_encoder
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task
from mnms.search.space import SearchSpace, SearchSpaceError
from mnms.utils.config import ConfigError, from_config


@pytest.fixture(scope="module")
def trec(data_dir):
    return load_task("trec", data_dir, max_examples=300, seed=0)


# -- what an architecture may be --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"encoder": "minilm", "conv_filters": 64}, ["conv_filters=64", "'minilm'", "one vector per text"]),
        ({"encoder": "minilm", "pooling": "max"}, ["pooling='max'", "token vectors"]),
        ({"encoder": "words", "fine_tune": True}, ["fine_tune=True", "'words'", "no pretrained embedding table"]),
        ({"encoder": "words", "fine_tune_layers": 1}, ["fine_tune_layers=1", "has 0 transformer layers"]),
        ({"encoder": "minilm", "fine_tune_layers": 7}, ["fine_tune_layers=7", "has 6 transformer layers"]),
        ({"wide": "trigrams"}, ["wide='trigrams'", "['none', 'words', 'chars', 'both']"]),
        ({"conv_max_width": 0}, ["conv_max_width=0", "1 to 9"]),
        ({"wide_learning_rate": 0}, ["wide_learning_rate=0", "(0, 10]"]),
    ],
)
def test_an_architecture_a_child_cannot_build_is_refused_naming_key_and_fix(fields, fragments) -> None:
    with pytest.raises(ConfigError) as error:
        from_config(Architecture, fields)
    assert all(fragment in str(error.value) for fragment in fragments), str(error.value)


def test_every_encoder_builds_the_defaults_and_token_level_encoders_build_a_convolution() -> None:
    for encoder in ("minilm", "minilm-tokens", "fr-vectors", "char-ngrams", "words", "st:some/model"):
        Architecture(encoder=encoder)
    for encoder in ("minilm-tokens", "fr-vectors", "char-ngrams", "words"):
        Architecture(encoder=encoder, conv_filters=8, pooling="max")
    Architecture(encoder="minilm", fine_tune_layers=6)


SPACE = {
    "decisions": [
        {"name": "encoder", "choices": ["minilm", "words"]},
        {"name": "conv_filters", "choices": [0, 32]},
    ]
}


def test_a_space_offering_a_choice_an_encoder_cannot_build_is_refused_with_the_fix() -> None:
    with pytest.raises(SearchSpaceError) as error:
        SearchSpace.from_config(SPACE)
    message = str(error.value)
    assert "decision 'conv_filters' offers 32 to encoder 'minilm'" in message
    assert "add `when: {encoder: ['words']}`" in message
    fixed = {"decisions": [SPACE["decisions"][0], {**SPACE["decisions"][1], "when": {"encoder": ["words"]}}]}
    assert SearchSpace.from_config(fixed).size() == 3


def test_a_child_default_that_a_searched_encoder_cannot_build_is_refused() -> None:
    space = SearchSpace.from_config({"decisions": [SPACE["decisions"][0]]})
    with pytest.raises(SearchSpaceError, match=r"child.arch.conv_filters=32 applies to every child.*'minilm'"):
        space.check_buildable({**Architecture().to_dict(), "conv_filters": 32})
    space.check_buildable(Architecture().to_dict())


def test_a_gated_decision_whose_default_an_ungated_encoder_cannot_build_is_refused() -> None:
    space = SearchSpace.from_config(
        {
            "decisions": [
                SPACE["decisions"][0],
                {"name": "pooling", "choices": ["mean", "max"], "when": {"encoder": ["words"]}},
            ]
        }
    )
    with pytest.raises(SearchSpaceError, match=r"child.arch.pooling='max' applies to every child.*'minilm'"):
        space.check_buildable({**Architecture().to_dict(), "encoder": "words", "pooling": "max"})
    space.check_buildable({**Architecture().to_dict(), "encoder": "words"})


def test_train_py_refuses_such_a_search_before_anything_trains(data_dir, tmp_path) -> None:
    from helpers.tiny_search import tiny_run

    overrides = [
        "child.arch.encoder=words",
        "child.arch.conv_filters=16",
        "search_space.decisions.0.choices=[words,minilm]",
    ]
    with pytest.raises(SearchSpaceError, match=r"child.arch.conv_filters=16 applies to every child.*'minilm'"):
        tiny_run(tmp_path / "run", tmp_path / "cache", *overrides)
    assert not (tmp_path / "run" / "trials.jsonl").exists()
    assert not (tmp_path / "cache").exists()  # no features were computed


# -- the towers ----------------------------------------------------------------------------------


def test_masked_pooling_ignores_padding_and_pools_an_empty_text_to_zeros() -> None:
    h = torch.tensor([[[1.0, -4.0], [3.0, 2.0], [100.0, 100.0]], [[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_pool(h, mask, "max").tolist() == [[3.0, 2.0], [0.0, 0.0]]
    assert masked_pool(h, mask, "mean").tolist() == [[2.0, -1.0], [0.0, 0.0]]
    assert torch.allclose(masked_pool(h, mask, "sqrtn")[0], torch.tensor([4.0, -2.0]) / 2**0.5)


@pytest.mark.parametrize(("width", "training"), [(1, False), (2, False), (3, True), (5, True)])
def test_the_convolution_keeps_one_position_per_token_and_padding_changes_nothing(width: int, training: bool) -> None:
    """In training mode too: batch norm statistics must not see the padded positions."""
    torch.manual_seed(0)
    arch = Architecture(
        encoder="words",
        conv_filters=4,
        conv_max_width=width,
        pooling="mean",
        conv_activation="tanh",
        conv_batch_norm=True,
    )
    pooling = TokenPooling(arch, dim=6).train(training)
    assert pooling.out_dim == 4 * width
    tokens = torch.randn(2, 5, 6)
    mask = torch.ones(2, 5, dtype=torch.bool)
    padded = torch.cat([tokens, torch.zeros(2, 3, 6)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(pooling((tokens, mask)), pooling((padded, padded_mask)), atol=1e-6)


def test_each_tower_trains_with_its_own_learning_rate_and_weight_decay() -> None:
    class Tokens(nn.Module):  # a frozen pretrained table, as minilm-tokens without fine_tune
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding.from_pretrained(torch.randn(10, 4), freeze=True, padding_idx=0)

        def forward(self, batch):
            return self.table(batch["ids"]), batch["ids"] != 0

    arch = Architecture(
        encoder="words",
        conv_filters=3,
        learning_rate=0.002,
        weight_decay=0.0001,
        wide="words",
        wide_learning_rate=0.05,
        wide_l2=0.00001,
    )
    model = ChildClassifier(arch, Tokens(), 4, 3, token_level=True, wide_rows=20)
    deep, wide = model.configure_optimizers().param_groups
    assert (deep["lr"], deep["weight_decay"], wide["lr"], wide["weight_decay"]) == (0.002, 0.0001, 0.05, 0.00001)
    assert wide["params"] == [model.wide.weight]
    assert len(deep["params"]) + 2 == len(list(model.parameters()))  # neither the wide table nor the frozen one
    assert all(p is not model.input_layer.table.weight for p in deep["params"])
    batch = {"ids": torch.tensor([[1, 2, 0], [3, 0, 0]]), "wide_ids": torch.tensor([[4, 0], [19, 7]])}
    assert torch.equal(model.wide(batch), torch.zeros(2, 3))  # the wide tower starts at zero
    assert model(batch).shape == (2, 3)


def test_the_wide_tower_puts_char_ngrams_after_word_ngrams_in_one_id_space(trec, tmp_path) -> None:
    cache = FeatureCache(tmp_path)
    words, _ = get_encoder("words").bag(trec, cache)
    chars, _ = get_encoder("char-ngrams").bag(trec, cache)
    ids, rows, _ = encode_wide(trec, "both", cache, None)
    n_words, n_chars = len(words["vocab"]), len(chars["vocab"])
    assert rows == 1 + n_words + n_chars
    train = ids["train"]
    word_part, char_part = train[:, : words["train.ids"].shape[1]], train[:, words["train.ids"].shape[1] :]
    assert torch.equal(word_part, words["train.ids"])
    assert torch.equal(char_part, torch.where(chars["train.ids"] != 0, chars["train.ids"] + n_words, 0))
    assert int(char_part.max()) == n_words + n_chars


@pytest.mark.slow
def test_untrained_top_layers_over_cached_states_give_the_frozen_minilm_vectors(trec, tmp_path) -> None:
    """Fine-tuning starts from the frozen encoder: the cached lower-layer states through a copy of
    the top layers reproduce the sentence vectors (up to the states' float16 rounding)."""
    cache = FeatureCache(tmp_path)
    frozen = child_inputs(trec, Architecture(encoder="minilm"), cache).deep.splits["validation"]["x"]
    for layers in (1, 6):
        tuned = child_inputs(trec, Architecture(encoder="minilm", fine_tune_layers=layers), cache).deep
        top = tuned.make_input_layer().eval()
        assert sum(p.requires_grad for p in top.parameters()) == len(list(top.parameters())) > 0
        with torch.no_grad():
            vectors = top(tuned.splits["validation"])
        assert torch.nn.functional.cosine_similarity(vectors, frozen).min() > 0.999


# -- how a child is trained and scored -------------------------------------------------------------


class EpochScores(lightning_modules.trainer.pl.Callback):
    """Records the validation accuracy of every epoch."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    def on_validation_end(self, trainer, module) -> None:
        self.scores.append(float(trainer.callback_metrics["val/accuracy"]))


def train_recording(monkeypatch, task, arch, trainer_cfg, cache) -> tuple:
    recorder = EpochScores()
    real = lightning_modules.trainer.build_trainer
    monkeypatch.setattr(lightning_modules.trainer, "build_trainer", lambda cfg, *cbs: real(cfg, *cbs, recorder))
    result = evaluate_child(task, arch, trainer_cfg, cache, seed=3)
    monkeypatch.setattr(lightning_modules.trainer, "build_trainer", real)
    return result, recorder.scores


def test_the_reward_and_test_scores_come_from_the_best_epochs_weights(trec, tmp_path, monkeypatch) -> None:
    arch = Architecture(encoder="words", hidden_layers=0, learning_rate=0.03, wide="chars", wide_learning_rate=0.1)
    cache = FeatureCache(tmp_path)
    best, scores = train_recording(monkeypatch, trec, arch, ChildTrainerConfig(max_epochs=6, patience=None), cache)
    assert len(scores) == best.epochs == 6
    assert best.val_accuracy == max(scores) and best.best_epoch == scores.index(max(scores)) + 1
    # The same child stopped after its best epoch and scored there gives the same test accuracy.
    short = ChildTrainerConfig(max_epochs=best.best_epoch, patience=None, epoch_selection="last")
    stopped = evaluate_child(trec, arch, short, cache, seed=3)
    assert (stopped.val_accuracy, stopped.test_accuracy) == (best.val_accuracy, best.test_accuracy)


def test_early_stopping_ends_a_child_patience_epochs_after_its_best(trec, tmp_path, monkeypatch) -> None:
    arch = Architecture(encoder="words", hidden_layers=0, learning_rate=0.03)
    result, scores = train_recording(
        monkeypatch, trec, arch, ChildTrainerConfig(max_epochs=30, patience=1), FeatureCache(tmp_path)
    )
    assert result.epochs < 30 and result.epochs == result.best_epoch + 1 == len(scores)
    assert scores[-1] <= max(scores[:-1])


@pytest.mark.parametrize(
    "arch",
    [
        Architecture(encoder="words", conv_filters=8, conv_max_width=3, conv_batch_norm=True, pooling="max"),
        Architecture(encoder="fr-vectors", conv_filters=8, fine_tune=True, pooling="sqrtn", wide="words"),
        Architecture(encoder="char-ngrams", pooling="max", hidden_layers=0, wide="both"),
        pytest.param(
            Architecture(encoder="minilm", fine_tune_layers=1, hidden_layers=0, wide="words", batch_size=128),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["words-conv", "fr-vectors-conv-wide", "char-ngrams-max-both", "minilm-top-layer-wide"],
)
def test_every_kind_of_child_trains_on_a_real_task_with_a_real_trainer(arch, trec, session_cache_dir) -> None:
    result = evaluate_child(trec, arch, ChildTrainerConfig(max_epochs=2), FeatureCache(session_cache_dir), seed=0)
    assert result.val_accuracy > 1 / trec.num_classes and 1 <= result.best_epoch <= result.epochs <= 2


def test_training_cut_short_mid_epoch_is_scored_on_its_final_weights(trec, tmp_path, monkeypatch) -> None:
    arch = Architecture(encoder="words", hidden_layers=0, batch_size=32)  # 9 steps per epoch on 300 examples
    cfg = ChildTrainerConfig(max_epochs=5, max_steps=12, patience=None)
    result, scores = train_recording(monkeypatch, trec, arch, cfg, FeatureCache(tmp_path))
    assert result.steps == 12 and len(scores) == 2  # after epoch 1, and after the 12th step
    assert result.val_accuracy == max(scores)


def test_the_accelerator_setting_is_checked_and_reaches_trainer_and_encoders(trec, tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"trainer.accelerator='tpu'.*\['auto', 'cpu', 'gpu'\]"):
        from_config(ChildTrainerConfig, {"accelerator": "tpu"})
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="trainer.accelerator=gpu but torch sees no CUDA device"):
            resolve_device("gpu")
    seen = {}
    real_build, real_encoder = lightning_modules.trainer.build_trainer, mnms.child.inputs.get_encoder

    def build(cfg, *callbacks):
        seen["trainer"] = real_build(cfg, *callbacks)
        return seen["trainer"]

    def encoder(name, options=None, device="cpu"):
        seen["device"] = device
        return real_encoder(name, options, device)

    monkeypatch.setattr(lightning_modules.trainer, "build_trainer", build)
    monkeypatch.setattr(mnms.child.inputs, "get_encoder", encoder)
    evaluate_child(
        trec,
        Architecture(encoder="words"),
        ChildTrainerConfig(max_epochs=1, accelerator="cpu"),
        FeatureCache(tmp_path),
        seed=0,
    )
    assert seen["device"] == "cpu" and type(seen["trainer"].accelerator).__name__ == "CPUAccelerator"


def test_gpu_without_cuda_fails_a_search_before_anything_trains(tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from helpers.tiny_search import tiny_run

    with pytest.raises(ConfigError, match="trainer.accelerator=gpu but torch sees no CUDA device"):
        tiny_run(tmp_path / "run", tmp_path / "cache", "trainer.accelerator=gpu")
    assert not (tmp_path / "run" / "trials.jsonl").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_child_trains_on_the_gpu(trec, tmp_path) -> None:
    arch = Architecture(encoder="minilm", fine_tune_layers=1, wide="words")
    result = evaluate_child(
        trec, arch, ChildTrainerConfig(max_epochs=1, accelerator="gpu"), FeatureCache(tmp_path), seed=0
    )
    assert result.val_accuracy > 1 / trec.num_classes


def test_bf16_mixed_precision_trains_a_child_as_well_and_other_precisions_are_refused(trec, tmp_path) -> None:
    """bf16-mixed (autocast matmuls, float32 weights) is what a GPU check compares; it runs on the CPU too."""
    arch = Architecture(encoder="words", hidden_layers=1, wide="chars", learning_rate=0.01)
    cache = FeatureCache(tmp_path)
    full, mixed = (
        evaluate_child(trec, arch, ChildTrainerConfig(max_epochs=3, precision=precision), cache, seed=0)
        for precision in ("32-true", "bf16-mixed")
    )
    assert mixed.val_accuracy > 1.5 / trec.num_classes  # it learns
    assert abs(mixed.val_accuracy - full.val_accuracy) <= 0.05  # and about as well as in float32
    with pytest.raises(ConfigError, match=r"trainer.precision='16-mixed' .*one of \['32-true', 'bf16-mixed'\]"):
        from_config(ChildTrainerConfig, {"precision": "16-mixed"})


def test_a_childs_compute_is_counted_the_same_every_time_and_grows_with_what_it_trains(trec, tmp_path) -> None:
    """FLOPs, unlike seconds, are a cost a seeded search can reward and reproduce exactly."""
    cache = FeatureCache(tmp_path)
    small = Architecture(encoder="words", hidden_layers=0)
    wide = Architecture(encoder="words", hidden_layers=2, width_1=512, width_2=512, wide="both")
    runs = [
        evaluate_child(trec, arch, ChildTrainerConfig(max_epochs=2, patience=None), cache, seed=0)
        for arch in (small, small, wide)
    ]
    assert runs[0].flops == runs[1].flops > 0  # counted, not timed
    assert runs[2].flops_per_example > 10 * runs[0].flops_per_example and runs[2].flops > runs[0].flops
    # Two epochs of training (3 forwards an example) and two validations of the whole split.
    trained, validated = 2 * len(trec.splits["train"]), 2 * len(trec.splits["validation"])
    assert runs[0].flops == pytest.approx(runs[0].flops_per_example * (3 * trained + validated), rel=0.05)
