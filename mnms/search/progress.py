"""Where a search stands: a live progress bar (trials done, ETA, best reward per task) and where its time goes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mnms.search.records import TrialRecord


class SearchProgress:
    """Context manager around a rich progress bar; a no-op when disabled."""

    def __init__(self, total: int, tasks: Sequence[str], *, enabled: bool = True) -> None:
        self.tasks = list(tasks)
        self.progress = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("trials"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]}"),
            disable=not enabled,
        )
        self.bar = self.progress.add_task("search", total=total, best="")

    def update(self, done: int, best: Mapping[str, TrialRecord]) -> None:
        text = "  ".join(f"{task} {best[task].reward:.3f}" if task in best else f"{task} -" for task in self.tasks)
        self.progress.update(self.bar, completed=done, best=f"best: {text}")

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()


class Stopwatch:
    """Seconds spent per part of a search: ``loop`` is the wall time of whole steps, the rest its parts."""

    PARTS = ("loop", "evaluate", "policy", "records", "checkpoint", "tracking")
    OVERHEAD = ("policy", "records", "checkpoint", "tracking")  # the driver's own work

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PARTS, 0.0)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - started

    def overhead_fraction(self) -> float:
        loop = self.seconds["loop"]
        return sum(self.seconds[part] for part in self.OVERHEAD) / loop if loop else 0.0
