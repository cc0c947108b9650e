"""The file layer under `mnms.data.tasks`: read split files, write uniform task folders, carve splits.

Every problem with a user's files surfaces here as a `TaskError` that names the task, the file
(and the line or row), and how to fix it, so a bad dataset fails before anything trains.
`TaskError` and `SPLITS` live in this lowest layer so that `mnms.data.tasks` and `mnms.data.download`
can share them without importing each other; `mnms.data.tasks` re-exports both.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mnms.utils.io import write_text_atomic

SPLITS: tuple[str, ...] = ("train", "validation", "test")
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}


class TaskError(ValueError):
    """A task that cannot be loaded. Message names the task, the file (and line where it applies) and the fix."""


def task_error(task: str, problem: str, fix: str) -> TaskError:
    """One message shape for every task problem: whose it is, what is wrong, what to do."""
    return TaskError(f"task {task!r}: {problem}. Fix: {fix}")


def file_format(path: Path, fmt: str, task: str) -> str:
    """The explicit `fmt`, or the one implied by the file suffix when `fmt` is "auto"."""
    if fmt != "auto":
        return fmt
    if path.suffix.lower() not in _FORMAT_BY_SUFFIX:
        raise task_error(
            task,
            f"cannot tell the format of {path} from its suffix {path.suffix!r}",
            f"name the file *.csv, *.tsv, *.jsonl or *.parquet, or set `format:` to one of {FORMATS}",
        )
    return _FORMAT_BY_SUFFIX[path.suffix.lower()]


def read_examples(path: Path, fmt: str, text_column: str, label_column: str, task: str) -> tuple[list[str], list[str]]:
    """Validated texts and label names of one split file (labels become strings: 0 -> "0")."""
    if not path.is_file():
        raise task_error(
            task,
            f"file {path} does not exist",
            "check the path (relative paths resolve against the task spec's folder) or download the file",
        )
    fmt = file_format(path, fmt, task)
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, label_column, task)
    table = read_table(path, fmt, _failing(task))
    for column in (text_column, label_column):
        if column not in table.columns:
            raise _missing_column(task, path, column, [str(c) for c in table.columns])
    texts, labels = table[text_column].tolist(), table[label_column].tolist()
    return _validated(texts, labels, lambda i: f"data row {i + 1}", path, task)


Failure = Callable[[str, str], Exception]  # (problem, fix) -> the exception a reader raises


def _failing(task: str) -> Failure:
    return lambda problem, fix: task_error(task, problem, fix)


def read_table(path: Path, fmt: str, fail: Failure) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as strings (CSV/TSV: empty cells stay ""); ``fail`` builds the error."""
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        # Every cell as a string, and empty cells stay "" (not NaN) so they fail as empty texts.
        return pd.read_csv(
            io.StringIO(utf8_text(path, fail)), sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowException) as err:
        raise fail(
            f"{path} is not a valid {fmt} file ({err})",
            "re-export the file; in CSV/TSV quote fields that contain the separator",
        ) from None


def _read_jsonl(path: Path, text_column: str, label_column: str, task: str) -> tuple[list[str], list[str]]:
    texts, labels, line_numbers = [], [], []
    for number, line in enumerate(utf8_text(path, _failing(task)).split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) carry no example
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise task_error(
                task,
                f"{path} line {number} is not valid JSON ({err.msg}, column {err.colno})",
                'write one JSON object per line, e.g. {"text": "...", "label": "..."}',
            ) from None
        if not isinstance(record, dict):
            raise task_error(
                task,
                f"{path} line {number} is a JSON {type(record).__name__}, not an object",
                'write one JSON object per line, e.g. {"text": "...", "label": "..."}',
            )
        for column in (text_column, label_column):
            if column not in record:
                raise _missing_column(task, path, column, list(record), f" (line {number})")
        texts.append(record[text_column])
        labels.append(record[label_column])
        line_numbers.append(number)
    return _validated(texts, labels, lambda i: f"line {line_numbers[i]}", path, task)


def utf8_text(path: Path, fail: Failure) -> str:
    """Decode strictly so a mis-encoded file fails with its line number instead of yielding mojibake."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise fail(
            f"{path} line {line} is not UTF-8 (byte {data[err.start]:#04x})",
            f"re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name}`",
        ) from None


def _missing_column(task: str, path: Path, column: str, present: list[str], at: str = "") -> TaskError:
    return task_error(
        task,
        f"{path}{at} has no column {column!r}; columns present: {present}",
        "set `text_column:` / `label_column:` in the task spec to one of those columns",
    )


def _validated(
    texts: list[Any], labels: list[Any], where: Callable[[int], str], path: Path, task: str
) -> tuple[list[str], list[str]]:
    """Reject empty files, non-string or blank texts and missing labels, naming the first offender."""
    if not texts:
        raise task_error(task, f"{path} contains no examples", "fill the file or drop it from the spec")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise task_error(
                task,
                f"{path} {where(i)} has an empty or non-string text ({text!r})",
                "remove that example or give it a non-empty text",
            )
    names = [_label_name(label) for label in labels]
    for i, name in enumerate(names):
        if name is None:
            raise task_error(
                task, f"{path} {where(i)} has no label ({labels[i]!r})", "remove that example or give it a label"
            )
    return texts, names  # type: ignore[return-value]  # None was ruled out just above


def _label_name(value: Any) -> str | None:
    """Labels are class names; numeric labels (0/1) are kept as their text, missing ones are None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    name = str(value).strip()
    return name or None


def read_meta(folder: Path, task: str) -> dict[str, Any]:
    """A uniform folder's meta.json (its "labels", if any, a list of class names), or {} when it has none."""
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise task_error(task, f"{path} is not valid UTF-8 JSON ({err})", "repair or delete meta.json") from None
    labels = meta.get("labels", []) if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise task_error(
            task,
            f"{path} is not an object with a list of class names as 'labels'",
            'write an object such as {"language": "en", "labels": ["negative", "positive"]}',
        )
    return meta


def write_folder(
    folder: Path, splits: Mapping[str, tuple[Sequence[str], Sequence[str]]], meta: Mapping[str, Any], task: str
) -> None:
    """Write a uniform task folder; each file appears atomically and meta.json last, as the
    marker that the folder is complete."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split, (texts, labels) in splits.items():
            lines = (json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in zip(texts, labels))
            write_text_atomic(folder / f"{split}.jsonl", "".join(lines))
        write_text_atomic(folder / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise task_error(
            task,
            f"cannot write the task folder {folder} ({err})",
            "point `paths.data_dir` / MNMS_DATA_DIR at a writable directory",
        ) from None


def stratified_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `size` examples with class proportions kept, and every class kept
    whenever `size` allows one example each (rare classes must survive a `max_examples` cap)."""
    classes, counts = np.unique(labels, return_counts=True)
    low = np.ones_like(counts) if size >= len(classes) else np.zeros_like(counts)
    return _draw(labels, classes, _allocate(counts, size, low, counts), rng)


def carve(labels: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, carved) with about `size` carved, stratified by label. Every
    class keeps at least one example, so the carved split never holds a label unseen in train."""
    classes, counts = np.unique(labels, return_counts=True)
    carved = _draw(labels, classes, _allocate(counts, size, np.zeros_like(counts), counts - 1), rng)
    return np.setdiff1d(np.arange(len(labels)), carved), carved


def _draw(labels: np.ndarray, classes: np.ndarray, take: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _allocate(counts: np.ndarray, size: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per-class sample sizes proportional to `counts`, within [low, high], summing to `size`
    (clamped to what the bounds allow). Largest-remainder rounding keeps proportions tight."""
    size = int(np.clip(size, low.sum(), high.sum()))
    quota = counts * size / counts.sum()
    take = np.clip(np.floor(quota).astype(np.int64), low, high)
    while (gap := size - int(take.sum())) != 0:
        # Move one example where the allocation is furthest from its quota; ties go to the first class.
        if gap > 0:
            take[np.argmax(np.where(take < high, quota - take, -np.inf))] += 1
        else:
            take[np.argmax(np.where(take > low, take - quota, -np.inf))] -= 1
    return take
