"""``mode=predict``: classify the texts of a file with a model ``mode=child`` saved, into another file.

    python train.py mode=predict model=outputs/child/<time>/model input=reviews.txt output=predictions.csv

``input`` is a file (``input=<file>``) or, for a table whose texts are not in a ``text``
column, ``input.path=<file> input.text_column=<column>`` (``input.format`` when the
suffix does not say). Features go through the same feature cache (``paths.cache_dir``)
as training, so a file predicted again is not encoded again.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mnms.model.files import PredictConfig, check_output, read_inputs, write_predictions
from mnms.model.predictor import load_model
from mnms.utils.io import RunDir


def run_predict(cfg: DictConfig, run_dir: Path) -> int:
    """Predict every text of ``cfg.input`` into ``cfg.output``; returns how many texts were classified."""
    settings = PredictConfig.from_config(cfg)
    model = load_model(settings.model, cfg.paths.cache_dir)
    source = settings.input
    inputs = read_inputs(source.path, source.format, source.text_column)
    output = Path(settings.output).expanduser() if settings.output else RunDir(run_dir).predictions
    check_output(output, inputs, model.classes)
    columns = [TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TextColumn("texts")]
    with Progress(*columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()) as progress:
        bar = progress.add_task("predict", total=len(inputs.texts))
        predictions = model.predict(
            inputs.texts, chunk_size=settings.chunk_size, on_chunk=lambda n: progress.advance(bar, n)
        )
    write_predictions(output, inputs, predictions)
    counts = {name: predictions.labels.count(name) for name in model.classes}
    console = Console(soft_wrap=True)
    console.print(f"{len(predictions):,} texts of {inputs.path} classified by {model.saved.folder}")
    console.print("predicted: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    console.print(f"predictions: {output}")
    return len(predictions)
