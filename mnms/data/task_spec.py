"""``TaskSpec``: a user's task described in YAML -- its files or pinned downloads, columns, and how splits are carved.

Every field is checked when the spec is read, so a broken spec fails, naming the spec
file and the fix, before anything is downloaded or trains.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnms.data.download import Download
from mnms.data.task_files import FORMATS, SPLITS, task_error
from mnms.utils.config import unknown_keys


@dataclass
class TaskSpec:
    """A user task: its files and/or pinned downloads, the columns to read, how to carve splits.

    Usually written as YAML (see conf/dataset/example_*.yaml). Relative file paths resolve
    against the YAML's folder (`source`), or the working directory for specs built in code."""

    name: str
    files: dict[str, str] = field(default_factory=dict)  # split -> csv/tsv/jsonl/parquet path
    downloads: list[Download] = field(default_factory=list)  # dicts, as written in YAML, are converted
    language: str = "unknown"
    format: str = "auto"  # auto = by file suffix
    text_column: str = "text"
    label_column: str = "label"
    validation_fraction: float = 0.1  # of the train file, when no validation file is given
    test_fraction: float = 0.1  # of the train file, when no test file is given
    split_seed: int = 0  # carved splits belong to the task, so they ignore the run seed
    source: Path | None = None  # the YAML this spec was read from

    def __post_init__(self) -> None:
        self._check(
            isinstance(self.name, str)
            and bool(self.name)
            and Path(self.name).name == self.name
            and not self.name.startswith("."),
            f"name {self.name!r}",
            "use a plain folder name, e.g. my-task",
        )
        self._check(
            isinstance(self.files, Mapping)
            and set(self.files) <= set(SPLITS)
            and all(isinstance(p, (str, os.PathLike)) and str(p) for p in self.files.values()),
            f"files {self.files!r}",
            f"map splits {SPLITS} to file paths, e.g. files: {{train: data.csv}}",
        )
        self.files = {split: str(path) for split, path in self.files.items()}  # Paths too, kept JSON-able
        self.downloads = [Download.parse(entry, self.name, self.origin) for entry in self.downloads]
        given = [*self.files, *(d.split for d in self.downloads)]
        self._check(
            "train" in given and len(given) == len(set(given)),
            f"splits given {given}",
            "give the train split exactly once, and each other split at most once, across files and downloads",
        )
        self._check(self.format in ("auto", *FORMATS), f"format {self.format!r}", f"use one of {('auto', *FORMATS)}")
        for key in ("language", "text_column", "label_column"):
            self._check(
                isinstance(getattr(self, key), str) and bool(getattr(self, key)),
                f"{key} {getattr(self, key)!r}",
                "give a non-empty string",
            )
        fractions = (self.validation_fraction, self.test_fraction)
        self._check(
            all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions) and sum(fractions) < 1,
            f"validation_fraction {fractions[0]!r} / test_fraction {fractions[1]!r}",
            "use fractions in (0, 1) that sum to less than 1, e.g. 0.1 and 0.1",
        )
        self._check(isinstance(self.split_seed, int), f"split_seed {self.split_seed!r}", "give an integer")

    @property
    def origin(self) -> str:
        """Where the spec came from, for messages."""
        return f"task spec {self.source or '(built in code)'}"

    def _check(self, ok: bool, what: str, fix: str) -> None:
        if not ok:
            raise task_error(str(self.name), f"invalid {what} in {self.origin}", fix)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskSpec:
        """Read a spec file; the task name defaults to the file name without its suffix."""
        path = Path(path)
        if not path.is_file():
            raise task_error(path.stem, f"task spec {path} does not exist", "check the path to the .yaml file")
        try:
            raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # ${oc.env:...} works as in Hydra
        except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as err:
            raise task_error(path.stem, f"task spec {path} is not valid YAML ({err})", "fix the YAML syntax") from None
        keys = sorted({f.name for f in dataclasses.fields(cls)} - {"source"})
        if not isinstance(raw, dict):
            raise task_error(path.stem, f"task spec {path} is not a mapping", f"write a mapping with the keys {keys}")
        if unknown := unknown_keys(raw, keys):
            raise task_error(path.stem, f"task spec {path} has unknown keys {unknown}", f"use only the keys {keys}")
        return cls(**{"name": path.stem, **raw}, source=path)

    def path(self, file: str) -> Path:
        """A file path from the spec, resolved against the spec's folder."""
        path = Path(file).expanduser()
        return path if path.is_absolute() else (self.source.parent if self.source else Path.cwd()) / path

    def describe(self) -> dict[str, Any]:
        """The fields that define the data, as JSON; a converted folder records it to detect stale conversions."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}
