"""A live progress bar for a search: trials done, ETA, and the best reward per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
