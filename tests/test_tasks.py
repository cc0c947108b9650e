"""Tasks: loading the real suite, validation errors on broken files, and user task specs."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnms.data.tasks import SPLITS, Task, TaskError, TaskSpec, list_tasks, load_task, resolve_data_dir

CONF_DATASET = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def label_counts(task: Task, split: str) -> dict[str, int]:
    return {task.labels[i]: n for i, n in Counter(task.splits[split].labels.tolist()).items()}


# --- the real dataset suite -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, language, classes",
    [
        ("sst2", "en", 2),
        ("langid-tatoeba", "multi", 10),
        ("french-allocine-tv", "fr", 2),
    ],
)
def test_real_task_matches_its_meta(data_dir: Path, name: str, language: str, classes: int) -> None:
    meta = json.loads((data_dir / name / "meta.json").read_text())
    task = load_task(name, data_dir)
    assert (task.name, task.language, task.num_classes) == (name, language, classes)
    assert task.labels == tuple(meta["labels"])
    assert tuple(task.splits) == SPLITS
    for split in SPLITS:
        data = task.splits[split]
        assert len(data) == meta["counts"][split] == len(data.labels)
        assert data.labels.dtype == np.int64 and not data.labels.flags.writeable  # cached features stay valid
        assert label_counts(task, split) == meta["label_counts"][split]
        assert all(isinstance(text, str) and text for text in data.texts[:50])


def test_sst2_loads_well_under_a_second(data_dir: Path) -> None:
    start = time.perf_counter()
    load_task("sst2", data_dir)
    assert time.perf_counter() - start < 1.0


def test_data_dir_comes_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNMS_DATA_DIR", str(data_dir))
    assert load_task("trec").num_classes == 6
    assert {"sst2", "trec", "langid-tatoeba"} <= set(list_tasks(None))


def test_data_dir_errors_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNMS_DATA_DIR", raising=False)
    with pytest.raises(TaskError, match=r"paths\.data_dir.*MNMS_DATA_DIR"):
        resolve_data_dir(None)
    with pytest.raises(TaskError, match="nowhere.*paths.data_dir"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("MNMS_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(TaskError, match=r"gone.*\$MNMS_DATA_DIR"):
        resolve_data_dir("")
    with pytest.raises(TaskError, match="task 'sst2'.*MNMS_DATA_DIR"):
        load_task("sst2")


def test_max_examples_is_stratified_and_deterministic_per_seed(data_dir: Path) -> None:
    full = load_task("trec", data_dir)
    capped = load_task("trec", data_dir, max_examples=60, seed=0)
    again = load_task("trec", data_dir, max_examples=60, seed=0)
    other = load_task("trec", data_dir, max_examples=60, seed=1)
    for split in SPLITS:
        assert len(capped.splits[split]) == 60
        assert set(capped.splits[split].labels) == set(range(6))  # rare "abbreviation" survives
        assert capped.splits[split].texts == again.splits[split].texts
        assert set(capped.splits[split].texts) <= set(full.splits[split].texts)
    assert capped.splits["train"].texts != other.splits["train"].texts
    # Proportions follow the full train split, within rounding (plus the one-per-class floor).
    share = np.bincount(full.splits["train"].labels) / len(full.splits["train"])
    assert np.abs(np.bincount(capped.splits["train"].labels) - 60 * share).max() <= 1.0
    # A cap above every split's size returns the task unchanged.
    assert load_task("trec", data_dir, max_examples=10**6).fingerprint("test") == full.fingerprint("test")


def test_fingerprint_is_stable_and_content_addressed(data_dir: Path) -> None:
    first, second = load_task("sst2", data_dir), load_task("sst2", data_dir)
    prints = [first.fingerprint(split) for split in SPLITS]
    assert prints == [second.fingerprint(split) for split in SPLITS]
    assert len(set(prints)) == 3 and all(len(p) >= 16 and int(p, 16) >= 0 for p in prints)
    assert load_task("sst2", data_dir, max_examples=100).fingerprint("train") != prints[0]
    with pytest.raises(TaskError, match="dev"):
        first.fingerprint("dev")


@pytest.mark.parametrize("name", ["../outside", "..", "sub/trec", "/etc/trec"])
def test_a_task_name_that_is_a_path_is_refused_before_any_file_is_read(name, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "outside.yaml").write_text("name: outside\n")  # would be found through `..`
    with pytest.raises(
        TaskError, match="a task name is a folder of paths.data_dir or a spec file's name.*never a path"
    ):
        load_task(name, data_dir, spec_dirs=[tmp_path / "specs"])


def test_unknown_task_lists_close_matches_first(data_dir: Path) -> None:
    with pytest.raises(TaskError) as caught:
        load_task("sst-2", data_dir, spec_dirs=[CONF_DATASET])
    message = str(caught.value)
    assert "did you mean 'sst2'" in message
    assert message.index("sst2") < message.index("sst5") < message.index("airline-sentiment")
    assert "spec files: example_csv, example_download (python train.py mode=tasks lists them" in message
    assert message.index("airline-sentiment") < message.index("spec files:") and "Fix:" in message


# --- validation of uniform folders --------------------------------------------------------------

GOOD = ['{"text": "good film", "label": "pos"}', '{"text": "bad film", "label": "neg"}']


def write_folder(root: Path, meta: dict | None = None, **splits: list[str] | bytes) -> Path:
    """A uniform task folder `root/broken`; every split defaults to two good lines."""
    folder = root / "broken"
    folder.mkdir()
    for split in SPLITS:
        content = splits.get(split, GOOD)
        data = content if isinstance(content, bytes) else "".join(line + "\n" for line in content).encode()
        (folder / f"{split}.jsonl").write_bytes(data)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"train": [*GOOD, '{"text": "cut off", "label"']}, r"train\.jsonl line 3 is not valid JSON"),
        ({"train": GOOD + ["", '["a list"]']}, r"train\.jsonl line 4 is a JSON list"),
        (
            {"validation": ['{"sentence": "x", "label": "pos"}']},
            r"validation\.jsonl \(line 1\) has no column 'text'.*'sentence'",
        ),
        ({"test": []}, r"test\.jsonl contains no examples"),
        (
            {"train": ['{"text": "a", "label": "pos"}', '{"text": "b", "label": "pos"}']},
            r"only the class\(es\) \['pos'\]",
        ),
        (
            {"validation": ['{"text": "meh", "label": "neutral"}']},
            r"validation labels \['neutral'\].*never occur in train",
        ),
        (
            {"train": GOOD[0].encode() + b'\n{"text": "caf\xe9", "label": "neg"}\n'},
            r"train\.jsonl line 2 is not UTF-8 \(byte 0xe9\)",
        ),
        ({"train": [*GOOD, '{"text": "  ", "label": "pos"}']}, r"train\.jsonl line 3 has an empty or non-string text"),
        ({"test": ['{"text": 7, "label": "pos"}']}, r"test\.jsonl line 1 has an empty or non-string text \(7\)"),
        ({"train": [*GOOD, '{"text": "x", "label": null}']}, r"train\.jsonl line 3 has no label"),
    ],
)
def test_broken_folder_fails_naming_task_file_line_and_fix(tmp_path: Path, files: dict, expected: str) -> None:
    write_folder(tmp_path, **files)
    with pytest.raises(TaskError, match=expected) as caught:
        load_task("broken", tmp_path)
    assert str(caught.value).startswith("task 'broken': ") and "Fix: " in str(caught.value)


def test_folder_with_a_missing_split_file(tmp_path: Path) -> None:
    (write_folder(tmp_path) / "test.jsonl").unlink()
    with pytest.raises(TaskError, match=r"test\.jsonl does not exist.*Fix: a task folder needs"):
        load_task("broken", tmp_path)


def test_meta_fixes_label_order_and_language_and_must_cover_labels(tmp_path: Path) -> None:
    write_folder(tmp_path, meta={"language": "fr", "labels": ["pos", "neg", "unused"]})
    task = load_task("broken", tmp_path)
    assert (task.labels, task.language) == (("pos", "neg", "unused"), "fr")
    assert task.splits["train"].labels.tolist() == [0, 1]
    (tmp_path / "broken" / "meta.json").write_text(json.dumps({"labels": ["pos"]}))
    with pytest.raises(TaskError, match=r"labels \['neg'\] occur .* not in meta.json"):
        load_task("broken", tmp_path)
    (tmp_path / "broken" / "meta.json").write_text(json.dumps({"labels": "pos neg"}))
    with pytest.raises(TaskError, match=r"meta\.json is not an object with a list of class names"):
        load_task("broken", tmp_path)


def test_a_folder_without_meta_sorts_train_labels(tmp_path: Path) -> None:
    task = load_task("broken", write_folder(tmp_path).parent)
    assert (task.labels, task.language, task.num_classes) == (("neg", "pos"), "unknown", 2)


# --- user files through task specs ------------------------------------------------------------


def labelled_frame(n: int = 200, offset: int = 0) -> pd.DataFrame:
    """Three imbalanced classes (50% / 30% / 20%) with distinct texts."""
    labels = ["pos"] * (n // 2) + ["neg"] * (3 * n // 10) + ["mixed"] * (n // 5)
    return pd.DataFrame({"review": [f"review number {offset + i}" for i in range(n)], "sentiment": labels})


def write_spec(folder: Path, name: str, **fields) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(fields))  # JSON is YAML
    return path


def test_one_csv_is_carved_into_stratified_seeded_splits(tmp_path: Path) -> None:
    labelled_frame().to_csv(tmp_path / "reviews.csv", index=False)
    spec = write_spec(
        tmp_path, "mine", files={"train": "reviews.csv"}, text_column="review", label_column="sentiment", language="en"
    )
    task = load_task(str(spec))
    assert (task.name, task.language, task.labels) == ("mine", "en", ("mixed", "neg", "pos"))
    assert [len(task.splits[s]) for s in SPLITS] == [160, 20, 20]
    for split in ("validation", "test"):
        assert label_counts(task, split) == {"pos": 10, "neg": 6, "mixed": 4}
    all_texts = [text for split in SPLITS for text in task.splits[split].texts]
    assert sorted(all_texts) == sorted(labelled_frame()["review"])  # a partition: no loss, no overlap
    assert load_task(str(spec)).fingerprint("test") == task.fingerprint("test")
    write_spec(
        tmp_path, "mine", files={"train": "reviews.csv"}, text_column="review", label_column="sentiment", split_seed=1
    )
    assert load_task(str(spec)).splits["test"].texts != task.splits["test"].texts


def test_a_given_test_file_is_kept_and_validation_carved_from_train(tmp_path: Path) -> None:
    labelled_frame().to_csv(tmp_path / "train.csv", index=False)
    labelled_frame(50, offset=1000).to_csv(tmp_path / "test.csv", index=False)
    write_spec(
        tmp_path,
        "mine",
        files={"train": "train.csv", "test": str(tmp_path / "test.csv")},
        text_column="review",
        label_column="sentiment",
        validation_fraction=0.25,
    )
    task = load_task("mine", spec_dirs=[tmp_path])
    assert [len(task.splits[s]) for s in SPLITS] == [150, 50, 50]
    assert task.splits["test"].texts == tuple(labelled_frame(50, offset=1000)["review"])


@pytest.mark.parametrize("suffix", ["tsv", "jsonl", "parquet"])
def test_tsv_jsonl_and_parquet_files_with_relative_paths(tmp_path: Path, suffix: str) -> None:
    frame = labelled_frame(40).assign(sentiment=lambda f: f["sentiment"].map({"pos": 1, "neg": 0, "mixed": 2}))
    path = tmp_path / "data" / f"all.{suffix}"
    path.parent.mkdir()
    {
        "tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    (tmp_path / "specs").mkdir()
    write_spec(
        tmp_path / "specs",
        "numeric",
        files={"train": f"../data/all.{suffix}"},
        text_column="review",
        label_column="sentiment",
    )
    task = load_task("numeric", spec_dirs=[tmp_path / "specs"])
    assert task.labels == ("0", "1", "2")  # numeric labels become class names
    assert [len(task.splits[s]) for s in SPLITS] == [32, 4, 4]
    assert task.splits["train"].texts[0] == "review number 0"


def test_csv_errors_name_the_row_and_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("review,stars\ngreat,5\n")
    with pytest.raises(TaskError, match=r"a\.csv has no column 'sentiment'; columns present: \['review', 'stars'\]"):
        load_task(
            str(write_spec(tmp_path, "a", files={"train": "a.csv"}, text_column="review", label_column="sentiment"))
        )
    (tmp_path / "b.csv").write_text("text,label\ngreat,pos\n,neg\n")
    with pytest.raises(TaskError, match=r"b\.csv data row 2 has an empty or non-string text"):
        load_task(str(write_spec(tmp_path, "b", files={"train": "b.csv"})))
    (tmp_path / "c.csv").write_bytes(b"text,label\ngreat,pos\nna\xefve,neg\n")
    with pytest.raises(TaskError, match=r"c\.csv line 3 is not UTF-8.*iconv"):
        load_task(str(write_spec(tmp_path, "c", files={"train": "c.csv"})))
    with pytest.raises(TaskError, match=r"task 'd': file .*missing\.csv does not exist"):
        load_task(str(write_spec(tmp_path, "d", files={"train": "missing.csv"})))


def test_too_little_data_to_carve_is_an_empty_split_error(tmp_path: Path) -> None:
    (tmp_path / "tiny.csv").write_text("text,label\na,x\nb,y\n")  # one example per class: nothing to carve
    with pytest.raises(TaskError, match="split test .*carved from .*tiny.csv.* is empty"):
        load_task(str(write_spec(tmp_path, "tiny", files={"train": "tiny.csv"})))


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"files": {"train": "a.csv"}, "colour": "red"}, r"unknown keys \['colour'\].*use only the keys"),
        ({"files": {"dev": "a.csv"}}, r"invalid files \{'dev': 'a.csv'\}"),
        ({"files": {"test": "a.csv"}}, r"invalid splits given \['test'\].*train split exactly once"),
        ({"files": {"train": "a.csv"}, "format": "xlsx"}, r"invalid format 'xlsx'.*'parquet'"),
        ({"files": {"train": "a.csv"}, "test_fraction": 0.95}, r"test_fraction 0.95.*sum to less than 1"),
        ({"files": {"train": "a.xlsx"}}, r"cannot tell the format of .*a\.xlsx from its suffix"),
        (
            {"downloads": [{"url": "ftp://x/a.csv", "sha256": "0" * 64, "split": "train"}]},
            r"download url 'ftp://x/a.csv'",
        ),
    ],
)
def test_bad_specs_fail_naming_the_spec_file(tmp_path: Path, fields: dict, expected: str) -> None:
    (tmp_path / "a.xlsx").write_text("not really")
    with pytest.raises(TaskError, match=expected) as caught:
        load_task(str(write_spec(tmp_path, "bad", **fields)))
    assert str(caught.value).startswith("task 'bad': ")


def test_example_specs_are_valid(tmp_path: Path) -> None:
    """The documented examples parse; example_csv loads once its CSV exists beside it."""
    download = TaskSpec.from_yaml(CONF_DATASET / "example_download.yaml")
    assert [d.split for d in download.downloads] == ["train", "test"]
    assert [d.filename for d in download.downloads] == ["train.csv", "test.parquet"]
    shutil.copy(CONF_DATASET / "example_csv.yaml", tmp_path)
    labelled_frame().to_csv(tmp_path / "reviews.csv", index=False)
    task = load_task(str(tmp_path / "example_csv.yaml"))
    assert (task.name, task.num_classes, len(task.splits["train"])) == ("example_csv", 3, 160)
