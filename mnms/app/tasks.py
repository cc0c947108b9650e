"""``mode=tasks``: the tasks a run can name, with their sizes, without loading any of them.

Task folders of ``paths.data_dir`` come first (what ``task=`` and ``tasks=[...]`` name),
then the task spec files of ``conf/dataset/`` and ``paths.task_specs`` (a user's own
CSV/TSV/JSONL/Parquet files or pinned downloads), which are recipes rather than data
here: a spec's examples are read, or downloaded, when a run first names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mnms.app.common import spec_dirs
from mnms.data.task_files import read_meta
from mnms.data.task_spec import TaskSpec
from mnms.data.tasks import SPLITS, list_specs, list_tasks, resolve_data_dir


def run_tasks(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Print the task folders and spec files; returns them (``{"folders": [...], "specs": [...]}``)."""
    root = resolve_data_dir(cfg.paths.data_dir)
    folders = [folder_row(root / name) for name in list_tasks(root)]
    specs = [spec_row(path) for path in list_specs(spec_dirs(cfg))]
    console = Console(soft_wrap=True)
    console.print(_folder_table(folders, root))
    console.print(_spec_table(specs))
    console.print(
        "Search some: python train.py tasks=[trec,sst2]   Train one child: python train.py mode=child task=trec",
        markup=False,
    )
    return {"folders": folders, "specs": specs}


def folder_row(folder: Path) -> dict[str, Any]:
    """A task folder's name, language, classes and split sizes (meta.json's counts, else the files' lines)."""
    meta = read_meta(folder, folder.name)
    counts = meta.get("counts") or {split: _lines(folder / f"{split}.jsonl") for split in SPLITS}
    return {
        "name": folder.name,
        "language": meta.get("language", "unknown"),
        "classes": len(meta["labels"]) if meta.get("labels") else None,
        **{split: counts.get(split) for split in SPLITS},
    }


def spec_row(path: Path) -> dict[str, Any]:
    """A spec file's task name, language, where its data comes from (files it names that are
    missing said so: the examples of conf/dataset/ are templates), and the file itself."""
    spec = TaskSpec.from_yaml(path)
    missing = [file for file in spec.files.values() if not spec.path(file).is_file()]
    hosts = sorted({urlparse(download.url).hostname or "?" for download in spec.downloads})
    source = [f"missing {', '.join(missing)}" if missing else "files"] if spec.files else []
    source += [f"download from {', '.join(hosts)}"] if hosts else []
    return {"name": spec.name, "language": spec.language, "source": "; ".join(source), "path": _shown(path)}


def _lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _folder_table(rows: list[dict[str, Any]], root: Path) -> Table:
    table = Table(title=f"{len(rows)} tasks in {root}", title_justify="left")
    for column in ("task", "language", "classes", *SPLITS):
        table.add_column(column, justify="left" if column == "task" else "right", no_wrap=True)
    for row in rows:
        table.add_row(row["name"], row["language"], _cell(row["classes"]), *(_cell(row[split]) for split in SPLITS))
    return table


def _spec_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title=f"{len(rows)} task spec files: your own files or pinned downloads, read when a run names them "
        "(conf/dataset/example_*.yaml are templates to copy)",
        title_justify="left",
    )
    for column in ("task", "language", "spec file", "data"):
        table.add_column(column, no_wrap=column in ("task", "spec file"))
    for row in rows:
        table.add_row(row["name"], row["language"], row["path"], row["source"])
    return table


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when below it (conf/dataset/...), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cell(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"
