"""Read back what W&B wrote for a run on local disk, to prove what was (or was not) mirrored.

This is a reader of W&B's private local file format (wandb 0.31), for tests and for
debugging an offline run before ``wandb sync``; it is not a source of truth (that is
the search's ``trials.jsonl``) and may need updating when wandb changes its format.
wandb-core finishes writing a run's files asynchronously after ``run.finish()``
returns, so read a run after ``wandb.teardown()`` (which waits for that) or after the
writing process has exited.

A run folder holds ``run-<id>.wandb``: a 7-byte header (``:W&B``, magic, version)
then 32 KiB blocks of leveldb-log records (crc32, length, type FULL/FIRST/MIDDLE/LAST)
whose payloads are ``wandb_internal_pb2.Record`` protobufs. Offline there is no
config.yaml or summary file, so config, history, summary and exit code come from those
records. Table rows are not in the records: each logged table (increment) is written
to ``files/media/table/*.table.json`` and the history row only points at that file.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK = 32768
_RECORD_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TABLE_TYPES = ("table-file", "incremental-table-file")


@dataclass
class OfflineRun:
    """What one local W&B run folder says was logged."""

    path: Path
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Logged artifacts: type, name, run_id (the run that produced it), files (path -> size), metadata.
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None  # None: the run never finished (still running or killed)


def find_offline_runs(root: Path) -> list[Path]:
    """Every ``offline-run-*`` folder under ``root``, oldest first (names start with the start time)."""
    return sorted((p for p in Path(root).rglob("offline-run-*") if p.is_dir()), key=lambda p: p.name)


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Parse ``run_dir/run-*.wandb`` (and the table files it points at) into an OfflineRun."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb file in {run_dir}, found {[f.name for f in files]}")
    from wandb.proto import wandb_internal_pb2

    run = OfflineRun(path=run_dir)
    for payload in _payloads(files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id = record.run.run_id
            _apply(run.config, record.run.config.update, record.run.config.remove)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply(row, record.history.item, [])
            run.history.append(row)
            _collect_tables(run, row)
        elif kind == "artifact":
            artifact = record.artifact
            run.artifacts.append(
                {
                    "type": artifact.type,
                    "name": artifact.name,
                    "run_id": artifact.run_id,
                    "files": {entry.path: entry.size for entry in artifact.manifest.contents},
                    "metadata": json.loads(artifact.metadata or "{}"),
                }
            )
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    run.summary.pop("_wandb", None)
    return run


def _payloads(path: Path) -> Iterator[bytes]:
    """Reassemble record payloads; a torn record at the end (run still writing) ends the scan."""
    data = path.read_bytes()
    if not data.startswith(_HEADER):
        raise ValueError(f"{path} does not start with the W&B log header {_HEADER!r}; not a run-*.wandb file?")
    pos, parts = len(_HEADER), b""
    while pos + _RECORD_HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _RECORD_HEADER:  # block trailer: zero padding
            pos += _BLOCK - pos % _BLOCK
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        if len(chunk) < length or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            raise ValueError(f"{path}: corrupt record at byte {pos} (checksum mismatch)")
        pos += _RECORD_HEADER + length
        parts = chunk if kind in (_FULL, _FIRST) else parts + chunk
        if kind in (_FULL, _LAST):
            yield parts


def _apply(target: dict[str, Any], updates: Any, removes: Any) -> None:
    """Apply W&B (key or nested_key, value_json) items to a nested dict."""
    for item in updates:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(item.value_json)
    for item in removes:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = target
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)


def _collect_tables(run: OfflineRun, row: dict[str, Any]) -> None:
    """Append the rows of every table a history row points at (an increment adds, a plain table replaces)."""
    for key, value in row.items():
        if not (isinstance(value, dict) and value.get("_type") in _TABLE_TYPES and "path" in value):
            continue
        table_file = run.path / "files" / value["path"]
        if not table_file.is_file():
            continue
        table = json.loads(table_file.read_text(encoding="utf-8"))
        rows = [dict(zip(table["columns"], values)) for values in table["data"]]
        if value["_type"] == "incremental-table-file":
            run.tables.setdefault(key, []).extend(rows)
        else:
            run.tables[key] = rows
