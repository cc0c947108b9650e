"""``mode=predict``: classify the texts of a file with a model ``mode=child`` saved, into another file.

    python train.py mode=predict model=outputs/child/<time>/model input=reviews.txt output=predictions.csv

``input`` is a file (``input=<file>``) or, for a table whose texts are not in a ``text``
column, ``input.path=<file> input.text_column=<column>`` (``input.format`` when the
suffix does not say). Features go through the same feature cache (``paths.cache_dir``)
as training, so a file predicted again is not encoded again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mnms.model.files import check_output, read_inputs, write_predictions
from mnms.model.predictor import load_model
from mnms.utils.config import ConfigError, is_int, plain
from mnms.utils.io import RunDir

INPUT_KEYS = {"path": None, "text_column": "text", "format": "auto"}


def run_predict(cfg: DictConfig, run_dir: Path) -> int:
    """Predict every text of ``cfg.input`` into ``cfg.output``; returns how many texts were classified."""
    if not cfg.model:
        raise ConfigError("mode=predict needs model=<folder>: the model folder mode=child saved (<run dir>/model)")
    source = input_settings(cfg.input)
    if not is_int(cfg.chunk_size) or cfg.chunk_size < 1:
        raise ConfigError(f"chunk_size={cfg.chunk_size!r} must be an integer >= 1 (texts encoded at once)")
    model = load_model(cfg.model, cfg.paths.cache_dir)
    inputs = read_inputs(source["path"], source["format"], source["text_column"])
    output = Path(cfg.output).expanduser() if cfg.output else RunDir(run_dir).predictions
    check_output(output, inputs, model.classes)
    columns = [TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TextColumn("texts")]
    with Progress(*columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()) as progress:
        bar = progress.add_task("predict", total=len(inputs.texts))
        predictions = model.predict(
            inputs.texts, chunk_size=cfg.chunk_size, on_chunk=lambda n: progress.advance(bar, n)
        )
    write_predictions(output, inputs, predictions)
    counts = {name: predictions.labels.count(name) for name in model.classes}
    console = Console()
    console.print(f"{len(predictions):,} texts of {inputs.path} classified by {model.saved.folder}")
    console.print("predicted: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    console.print(f"predictions: {output}")
    return len(predictions)


def input_settings(value: Any) -> dict[str, Any]:
    """``input`` as ``{path, text_column, format}``: a file path alone, or the mapping."""
    value = plain(value)
    settings = dict(INPUT_KEYS)
    if isinstance(value, str):
        settings["path"] = value
    elif isinstance(value, dict):
        if unknown := sorted(set(value) - set(INPUT_KEYS)):
            raise ConfigError(f"unknown key(s) {[f'input.{k}' for k in unknown]}; valid: {list(INPUT_KEYS)}")
        settings.update(value)
    if not settings["path"]:
        raise ConfigError(
            "mode=predict needs input=<file>: JSONL, CSV, TSV, Parquet, or a .txt file of one text a line "
            "(input.path=<file> input.text_column=<column> for a table whose texts are not in `text`)"
        )
    return settings
