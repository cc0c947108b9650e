"""The files ``mode=predict`` reads and writes: texts in (JSONL, CSV, TSV, Parquet, plain text), predictions out.

Every row of the input reaches the output in order, with its own fields kept (an id
column survives) and the prediction added. Problems with the input are found before
anything is predicted and name the file, the line or row, and the fix; the output is
written to a temporary file and moved into place, so it is complete or absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mnms.data.task_files import read_table, utf8_text
from mnms.model.predictor import CHUNK_SIZE, Predictions
from mnms.utils.config import ConfigError, check, from_config, is_int
from mnms.utils.io import atomic_write

INPUT_FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")
OUTPUT_FORMATS = ("jsonl", "csv", "tsv", "parquet")
_BY_SUFFIX = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".txt": "text"}
PREDICTION, PROBABILITIES, PROBABILITY_PREFIX = "prediction", "probabilities", "prob_"


class InputError(ValueError):
    """An input or output file ``mode=predict`` cannot use; the message names the file, where, and the fix."""


def _fail(problem: str, fix: str) -> InputError:
    return InputError(f"{problem}. Fix: {fix}")


@dataclass(frozen=True)
class Inputs:
    """The texts to classify and the rows they came from (a text file's row is ``{"text": line}``)."""

    path: Path
    texts: list[str]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class PredictInput:
    """``input``: the file to classify, and where its texts are."""

    section: ClassVar[str] = "input"

    path: str | None = None
    text_column: str = "text"  # the column (JSONL key) holding the texts, in a table
    format: str = "auto"  # auto (by suffix) | jsonl | csv | tsv | parquet | text


@dataclass(frozen=True)
class PredictConfig:
    """``mode=predict``'s top-level keys (``conf/mode/predict.yaml``): the model, the texts, where predictions go.

    ``input`` is a file (``input=<file>``) or the ``PredictInput`` fields
    (``input.path=<file> input.text_column=<column>``).
    """

    section: ClassVar[str] = ""  # top-level keys

    model: str | None = None  # a model folder: what mode=child saves as <run dir>/model
    input: PredictInput = field(default_factory=PredictInput)
    output: str | None = None  # .jsonl, .csv, .tsv or .parquet; null = <run dir>/predictions.jsonl
    chunk_size: int = CHUNK_SIZE  # texts encoded at once (bounds memory)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("mode=predict needs model=<folder>: the model folder mode=child saved (<run dir>/model)")
        if not self.input.path:
            raise ConfigError(
                "mode=predict needs input=<file>: JSONL, CSV, TSV, Parquet, or a .txt file of one text a line "
                "(input.path=<file> input.text_column=<column> for a table whose texts are not in `text`)"
            )
        check(
            self,
            "chunk_size",
            is_int(self.chunk_size) and self.chunk_size >= 1,
            "an integer >= 1 (texts encoded at once)",
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PredictConfig:
        """From the composed config's top-level keys; ``input`` may be a path alone."""
        values = {item.name: cfg[item.name] for item in fields(cls) if item.name in cfg}
        if isinstance(values.get("input"), str):
            values["input"] = {"path": values["input"]}
        return from_config(cls, values)


def input_format(path: Path, fmt: str) -> str:
    """``fmt``, or the format the suffix of ``path`` names when ``fmt`` is ``auto``."""
    if fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise _fail(f"input.format={fmt!r} is unknown", f"use auto or one of {list(INPUT_FORMATS)}")
        return fmt
    if path.suffix.lower() not in _BY_SUFFIX:
        raise _fail(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}",
            f"name it *.jsonl, *.csv, *.tsv, *.parquet or *.txt (one text a line), or set input.format to one of "
            f"{list(INPUT_FORMATS)}",
        )
    return _BY_SUFFIX[path.suffix.lower()]


def read_inputs(path: str | Path, fmt: str = "auto", text_column: str = "text") -> Inputs:
    """Every text of ``path``, checked: each is a non-empty string, and the file is UTF-8."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _fail(f"input file {path} does not exist", "check input= (relative paths are from the working directory)")
    fmt = input_format(path, fmt)
    if fmt == "text":
        rows, where = _text_rows(path)
    elif fmt == "jsonl":
        rows, where = _jsonl_rows(path, text_column)
    else:
        table = read_table(path, fmt, _fail)
        if text_column not in table.columns:
            raise _missing_column(path, text_column, [str(c) for c in table.columns])
        rows, where = table.to_dict("records"), [f"data row {i + 1}" for i in range(len(table))]
    if not rows:
        raise _fail(f"input file {path} holds no texts", "give a file with one text per line or row")
    column = "text" if fmt == "text" else text_column
    for row, at in zip(rows, where):
        text = row[column]
        if not isinstance(text, str) or not text.strip():
            raise _fail(
                f"{path} {at} has an empty or non-string text ({text!r})",
                "remove that line or give it a text: every line or row is one text to classify",
            )
    return Inputs(path, [row[column] for row in rows], rows)


def _text_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    lines = utf8_text(path, _fail).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [{"text": line.removesuffix("\r")} for line in lines], [f"line {n}" for n in range(1, len(lines) + 1)]


def _jsonl_rows(path: Path, text_column: str) -> tuple[list[dict[str, Any]], list[str]]:
    lines = utf8_text(path, _fail).split("\n")
    if lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise _fail(f"{path} line {number} is empty", "remove it: every line is one JSON object with a text")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise _fail(
                f"{path} line {number} is not valid JSON ({error.msg}, column {error.colno})",
                f'write one JSON object per line, e.g. {{"{text_column}": "..."}}',
            ) from None
        if not isinstance(row, dict):
            raise _fail(
                f"{path} line {number} is a JSON {type(row).__name__}, not an object", "write one object per line"
            )
        if text_column not in row:
            raise _missing_column(path, text_column, list(row), f" (line {number})")
        rows.append(row)
    return rows, [f"line {n}" for n in range(1, len(rows) + 1)]


def _missing_column(path: Path, column: str, present: list[str], at: str = "") -> InputError:
    return _fail(
        f"{path}{at} has no column {column!r}; columns present: {present}",
        f"name the column that holds the texts: input.path={path} input.text_column=<one of {present}>",
    )


def output_format(path: Path) -> str:
    if path.suffix.lower() not in {s for s, f in _BY_SUFFIX.items() if f in OUTPUT_FORMATS}:
        raise _fail(
            f"output={str(path)!r}: cannot tell the format from its suffix {path.suffix!r}",
            "name the output *.jsonl, *.csv, *.tsv or *.parquet",
        )
    return _BY_SUFFIX[path.suffix.lower()]


def check_output(path: Path, inputs: Inputs, classes: tuple[str, ...]) -> None:
    """Refuse, before predicting, an output whose format is unknown, whose new columns the input already
    has, or that cannot be written (a folder, a path through a file, a folder this user may not write)."""
    fmt = output_format(path)
    added = {PREDICTION, PROBABILITIES} if fmt == "jsonl" else {PREDICTION, *_probability_columns(classes)}
    if taken := sorted(added & set(inputs.rows[0])):
        raise _fail(
            f"{inputs.path} already has the column(s) {taken} the predictions would be written to",
            "rename those columns in the input, or predict from a copy without them",
        )
    if path.resolve() == inputs.path.resolve():
        raise _fail(f"output={str(path)!r} is the input file", "write the predictions to another file")
    if path.is_dir():
        raise _fail(f"output={str(path)!r} is a folder", f"name a file in it, e.g. output={path / 'predictions.csv'}")
    folder = next(parent for parent in path.parents if parent.exists())  # the nearest that exists
    if not folder.is_dir():
        raise _fail(f"output={str(path)!r}: {folder} is a file, not a folder", "give an output path through folders")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(f"output={str(path)!r}: this user may not write in {folder}", "give an output in a folder you own")


def write_predictions(path: Path, inputs: Inputs, predictions: Predictions) -> Path:
    """Each input row plus its prediction, atomically: JSONL rows get ``probabilities`` as an object,
    tables a ``prob_<class>`` column per class."""
    check_output(path, inputs, predictions.classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = output_format(path)
    if fmt == "jsonl":
        lines = (
            json.dumps({**row, **record}, ensure_ascii=False, default=_jsonable) + "\n"
            for row, record in zip(inputs.rows, predictions.records())
        )
        return atomic_write(path, lambda handle: handle.write("".join(lines).encode("utf-8")))
    table = pd.DataFrame(inputs.rows)
    table[PREDICTION] = predictions.labels
    for column, values in zip(_probability_columns(predictions.classes), predictions.probabilities.T):
        table[column] = values
    if fmt == "parquet":
        return atomic_write(path, lambda handle: table.to_parquet(handle, index=False))
    text = table.to_csv(index=False, sep="\t" if fmt == "tsv" else ",")
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _probability_columns(classes: tuple[str, ...]) -> list[str]:
    return [PROBABILITY_PREFIX + name for name in classes]


def _jsonable(value: Any) -> Any:
    """Values a Parquet row may hold that ``json`` does not write itself: numpy scalars, else their text."""
    return value.item() if isinstance(value, np.generic) else str(value)
