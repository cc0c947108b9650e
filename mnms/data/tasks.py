"""Tasks: named text-classification datasets with fixed train/validation/test splits.

`load_task(name)` tries, in order:
1. `name` as a path to a task spec YAML (``task_spec.TaskSpec``);
2. `<spec_dir>/<name>.yaml` in each given spec dir (the project ships `conf/dataset/`);
3. the folder `<data_dir>/<name>/` in the uniform format: train/validation/test.jsonl with one
   {"text": str, "label": str} per line, plus an optional meta.json ("language", "labels").
A spec describes the user's own CSV/TSV/JSONL/Parquet files (missing splits are carved,
stratified) or pinned downloads, which are converted once into a uniform folder. All checks run
at load time so that a broken dataset fails with a fix before anything trains.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnms.data.download import Download, fetch_verified
from mnms.data.task_files import (
    SPLITS,
    TaskError,
    carve,
    read_examples,
    read_meta,
    stratified_subset,
    task_error,
    write_folder,
)
from mnms.data.task_spec import TaskSpec

__all__ = [
    "SPLITS",
    "Download",
    "Split",
    "Task",
    "TaskError",
    "TaskSpec",
    "list_specs",
    "list_tasks",
    "find_spec",
    "load_task",
    "resolve_data_dir",
]

Examples = tuple[list[str], list[str]]  # one split's texts and label names, before encoding


@dataclass(frozen=True, eq=False, repr=False)  # eq=False: array fields make field-wise == ambiguous
class Split:
    """The examples of one split; immutable so cached features can never drift from it."""

    texts: tuple[str, ...]
    labels: np.ndarray  # int64 indices into Task.labels, same length as texts

    def __post_init__(self) -> None:
        labels = np.array(self.labels, dtype=np.int64)  # a private copy, so read-only is safe
        labels.flags.writeable = False
        if labels.shape != (len(self.texts),):
            raise ValueError(f"Split has {len(self.texts)} texts but labels of shape {labels.shape}")
        object.__setattr__(self, "texts", tuple(self.texts))
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"Split({len(self)} examples)"


@dataclass(frozen=True, eq=False, repr=False)
class Task:
    """A loaded, validated task. Identity is content: compare tasks by `fingerprint`."""

    name: str
    language: str  # e.g. "en", "fr", "multi", or "unknown"
    labels: tuple[str, ...]  # class names; label index = position
    splits: Mapping[str, Split]  # exactly the keys of SPLITS
    _fingerprints: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if set(self.splits) != set(SPLITS):
            raise task_error(self.name, f"splits {sorted(self.splits)} were given", f"give exactly {SPLITS}")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "splits", {s: self.splits[s] for s in SPLITS})  # a dict: picklable, in SPLITS order
        for name, split in self.splits.items():
            if len(split) and not 0 <= split.labels.min() <= split.labels.max() < self.num_classes:
                raise task_error(
                    self.name,
                    f"{name} has label indices outside 0..{self.num_classes - 1}",
                    "encode labels as positions in Task.labels",
                )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def fingerprint(self, split: str) -> str:
        """Stable content hash (hex) of one split's texts and labels plus the task's label list;
        the feature-cache key, so any edit to the data invalidates cached features."""
        if split not in self._fingerprints:
            if split not in self.splits:
                raise task_error(self.name, f"no split {split!r}", f"use one of {SPLITS}")
            data = self.splits[split]
            payload = json.dumps([self.labels, data.texts, data.labels.tolist()])  # ASCII-escaped: always encodable
            self._fingerprints[split] = hashlib.sha256(payload.encode()).hexdigest()
        return self._fingerprints[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(split)}" for name, split in self.splits.items())
        return f"Task({self.name!r}, language={self.language!r}, classes={self.num_classes}, {sizes})"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The configured data dir, else $MNMS_DATA_DIR. A set but wrong value is an error rather than
    a silent fallback, so a typo in the config cannot quietly train on other data."""
    origin = "`paths.data_dir`"
    if data_dir is None or str(data_dir) == "":
        data_dir, origin = os.environ.get("MNMS_DATA_DIR"), "$MNMS_DATA_DIR"
    fix = "set `paths.data_dir=/path/to/datasets` in the config or `export MNMS_DATA_DIR=/path/to/datasets`"
    if not data_dir:
        raise TaskError(f"no data directory: neither `paths.data_dir` nor $MNMS_DATA_DIR is set. Fix: {fix}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise TaskError(f"data directory {str(path)!r} (from {origin}) is not a directory. Fix: {fix}")
    return path


def list_tasks(data_dir: str | Path | None) -> list[str]:
    """The task folders of the data dir (uniform format: a ``train.jsonl`` each), by name."""
    return sorted(p.name for p in resolve_data_dir(data_dir).iterdir() if (p / "train.jsonl").is_file())


def list_specs(spec_dirs: Sequence[str | Path]) -> list[Path]:
    """The task spec YAMLs of the spec dirs, by name: tasks of the user's own files or pinned downloads."""
    found = [p for d in spec_dirs for p in Path(d).glob("*") if p.suffix in (".yaml", ".yml")]
    return sorted(found, key=lambda p: (p.stem, str(p)))


def load_task(
    name: str,
    data_dir: str | Path | None = None,
    *,
    spec_dirs: Sequence[str | Path] = (),
    max_examples: int | None = None,
    seed: int = 0,
) -> Task:
    """Load and validate a task by name or spec path; `max_examples` caps every split
    (stratified by label, deterministic per `seed`) for quick runs."""
    name = str(name)  # a Path to a spec file works too
    spec = find_spec(name, spec_dirs)
    if spec is None:
        task = _load_folder(_find_folder(name, data_dir, spec_dirs), name)
    elif spec.downloads:
        task = _load_downloaded(spec, resolve_data_dir(data_dir))
    else:
        task = _task_from_files(spec, {split: spec.path(file) for split, file in spec.files.items()})
    return task if max_examples is None else _capped(task, max_examples, seed)


def find_spec(name: str, spec_dirs: Sequence[str | Path]) -> TaskSpec | None:
    """The task spec ``load_task(name)`` reads, or None when ``name`` is a plain folder of the data dir."""
    if name.endswith((".yaml", ".yml")):
        return TaskSpec.from_yaml(name)
    if Path(name).name != name or name in ("", ".", ".."):
        raise task_error(
            name,
            "a task name is a folder of paths.data_dir or a spec file's name in a spec dir, never a path",
            "give the name alone (task=trec), or a spec file by its path ending in .yaml",
        )
    candidates = (Path(d) / f"{name}{suffix}" for d in spec_dirs for suffix in (".yaml", ".yml"))
    return next((TaskSpec.from_yaml(p) for p in candidates if p.is_file()), None)


def _find_folder(name: str, data_dir: str | Path | None, spec_dirs: Sequence[str | Path]) -> Path:
    try:
        root = resolve_data_dir(data_dir)
    except TaskError as err:
        raise TaskError(f"task {name!r} has no spec in {[str(d) for d in spec_dirs]} and {err}") from None
    if Path(name).name == name and (root / name).is_dir():
        return root / name
    names = list_tasks(root)
    specs = sorted({p.stem for p in list_specs(spec_dirs)})
    close = difflib.get_close_matches(name, names + specs, n=5, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise task_error(
        name,
        f"unknown task{hint}: no folder {root / name} and no {name}.yaml in spec dirs "
        f"{[str(d) for d in spec_dirs]}. Tasks of the data dir, closest first: "
        f"{', '.join([n for n in close if n in names] + [n for n in names if n not in close])}; spec files: "
        f"{', '.join(specs) or 'none'} (python train.py mode=tasks lists them with their sizes)",
        f"use a known name, or add a task: a folder {root}/<name>/ with {', '.join(s + '.jsonl' for s in SPLITS)} "
        "(+ optional meta.json), or a task spec YAML like conf/dataset/example_csv.yaml in a spec dir or passed by "
        "path",
    )


def _load_folder(folder: Path, name: str) -> Task:
    """A uniform folder; meta.json, when present, fixes the label order and the language."""
    meta = read_meta(folder, name)
    examples: dict[str, Examples] = {}
    for split in SPLITS:
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise task_error(
                name,
                f"{path} does not exist",
                f"a task folder needs {', '.join(s + '.jsonl' for s in SPLITS)}"
                "; add the split, or describe the data with a task spec YAML, which can carve missing splits",
            )
        examples[split] = read_examples(path, "jsonl", "text", "label", name)
    labels = meta.get("labels")
    if labels is not None:
        undeclared = sorted({y for _, ys in examples.values() for y in ys} - set(labels))
        if undeclared:
            raise task_error(
                name,
                f"labels {undeclared} occur in {folder} but not in meta.json 'labels' {labels}",
                "add them to meta.json 'labels' or correct those examples",
            )
    sources = {split: str(folder / f"{split}.jsonl") for split in SPLITS}
    return _build_task(name, str(meta.get("language", "unknown")), examples, sources, labels)


def _task_from_files(spec: TaskSpec, paths: Mapping[str, Path]) -> Task:
    """Read the spec's files and carve the missing splits out of train, stratified by label."""
    cols = (spec.text_column, spec.label_column)
    examples = {split: read_examples(path, spec.format, *cols, spec.name) for split, path in paths.items()}
    sources = {split: str(path) for split, path in paths.items()}
    texts, labels = examples["train"]
    pool, rng = len(texts), np.random.default_rng(spec.split_seed)
    for split, fraction in (("test", spec.test_fraction), ("validation", spec.validation_fraction)):
        if split not in examples:
            kept, carved = carve(np.array(labels), max(1, round(fraction * pool)), rng)
            examples[split] = ([texts[i] for i in carved], [labels[i] for i in carved])
            texts, labels = [texts[i] for i in kept], [labels[i] for i in kept]
            sources[split] = f"{split} carved from {paths['train']}"
    examples["train"] = (texts, labels)
    return _build_task(spec.name, spec.language, examples, sources, None)


def _build_task(
    name: str, language: str, examples: Mapping[str, Examples], sources: Mapping[str, str], labels: Sequence[str] | None
) -> Task:
    """Check the splits fit together, then encode labels (default order: sorted train labels)."""
    for split, (texts, _) in examples.items():
        if not texts:
            raise task_error(
                name,
                f"split {split} ({sources[split]}) is empty",
                "add examples, or lower the fraction carved from train",
            )
    train_classes = set(examples["train"][1])
    if len(train_classes) < 2:
        raise task_error(
            name,
            f"train ({sources['train']}) has only the class(es) {sorted(train_classes)}",
            "a classifier needs at least two classes: add examples, or check `label_column`",
        )
    for split in ("validation", "test"):
        unseen = sorted(set(examples[split][1]) - train_classes)
        if unseen:
            raise task_error(
                name,
                f"{split} labels {unseen} ({sources[split]}) never occur in train ({sources['train']})",
                f"add train examples of those classes, or remove them from {split}",
            )
    order = tuple(labels) if labels is not None else tuple(sorted(train_classes))
    index = {label: i for i, label in enumerate(order)}
    splits = {
        split: Split(tuple(texts), np.fromiter((index[y] for y in ys), np.int64, len(ys)))
        for split, (texts, ys) in examples.items()
    }
    return Task(name, language, order, splits)


def _load_downloaded(spec: TaskSpec, data_dir: Path) -> Task:
    """Fetch and convert once into `<data_dir>/<name>/`; afterwards it is a plain folder load.
    The folder's meta.json records the spec, so editing the spec triggers a fresh conversion."""
    folder, meta = data_dir / spec.name, read_meta(data_dir / spec.name, spec.name)
    if (folder / "train.jsonl").is_file() and "spec" not in meta:  # never overwrite a folder we did not convert
        raise task_error(
            spec.name,
            f"{folder} holds a task that was not converted from {spec.origin}",
            "give the spec another `name:`, or remove that folder if it is obsolete",
        )
    if meta.get("spec") != spec.describe():
        paths = {split: spec.path(file) for split, file in spec.files.items()}
        for item in spec.downloads:
            paths[item.split] = fetch_verified(item.url, item.sha256, folder / "raw" / item.filename, task=spec.name)
        task = _task_from_files(spec, paths)
        splits = {name: (split.texts, [task.labels[i] for i in split.labels]) for name, split in task.splits.items()}
        meta = {
            "name": task.name,
            "language": task.language,
            "labels": list(task.labels),
            "num_classes": task.num_classes,
            "counts": {name: len(s) for name, s in task.splits.items()},
            "spec": spec.describe(),
        }
        write_folder(folder, splits, meta, spec.name)
    return _load_folder(folder, spec.name)


def _capped(task: Task, max_examples: int, seed: int) -> Task:
    """Every split cut to `max_examples`, stratified and seeded, keeping each class where possible."""
    if not isinstance(max_examples, int) or max_examples < 1:
        raise task_error(
            task.name,
            f"max_examples={max_examples!r} is not a positive integer",
            "pass a positive integer, or None for all examples",
        )
    if all(len(split) <= max_examples for split in task.splits.values()):
        return task
    rng = np.random.default_rng(seed)
    splits = {}
    for name, split in task.splits.items():
        keep = stratified_subset(split.labels, max_examples, rng)
        splits[name] = Split(tuple(split.texts[i] for i in keep), split.labels[keep])
    return Task(task.name, task.language, task.labels, splits)
