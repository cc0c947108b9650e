"""Where a search stands: a live progress bar (trials done, ETA, best reward and distinct children per task)
and where its time goes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mnms.search.book import TrialBook


class SearchProgress:
    """Context manager around a rich progress bar; a no-op when disabled."""

    def __init__(self, total: int, tasks: Sequence[str], *, enabled: bool = True) -> None:
        """``enabled`` on a terminal only: redirected, a bar is one line cut to 80 columns, and the job's
        log gets a line per trial instead (mnms.app.logs)."""
        enabled = enabled and sys.stdout.isatty()
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

    def update(self, done: int, book: TrialBook) -> None:
        """Trials done, and per task its best reward and the distinct children it trained (a trial
        that shared an earlier result trained nothing, so "96 trials" never reads as 96 models)."""
        distinct = book.distinct(self.tasks)
        text = "  ".join(
            f"{task} {book.best[task].reward:.3f} ({distinct[task]} distinct)" if task in book.best else f"{task} -"
            for task in self.tasks
        )
        self.progress.update(self.bar, completed=done, best=f"best: {text}")

    def advance(self, _: object = None) -> None:
        """One more child finished (the bar moves per child; ``update`` then sets the step's totals)."""
        self.progress.advance(self.bar)

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
