"""The shared helpers: config conversion with errors that name the key, and atomic files."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from omegaconf import OmegaConf

from helpers.crafted import WritesAFile
from mnms.utils import io as io_module
from mnms.utils.config import ConfigError, check, from_config, plain
from mnms.utils.io import RunDir, UnreadableFile, atomic_write, torch_load_safe, torch_save_atomic, write_json_atomic


@dataclasses.dataclass(frozen=True)
class Inner:
    section: ClassVar[str] = "outer.inner"

    size: int = 3
    names: tuple[str, ...] = ("a",)


@dataclasses.dataclass(frozen=True)
class Outer:
    section: ClassVar[str] = "outer"

    rate: float = 0.5
    limit: float | None = None
    flag: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self) -> None:
        check(self, "rate", 0 < self.rate < 1, "a number in (0, 1)")


def test_from_config_converts_nested_nodes_once() -> None:
    node = OmegaConf.create({"rate": 0.25, "limit": "${rate}", "inner": {"size": 4, "names": ["x", "y"]}})
    built = from_config(Outer, node)
    assert built == Outer(rate=0.25, limit=0.25, inner=Inner(size=4, names=("x", "y")))
    assert from_config(Outer, None) == Outer()  # no values: every default


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"rte": 0.1},
            r"unknown key\(s\) \['outer.rte'\]; valid keys under outer are \['rate', 'limit', 'flag', 'inner'\]",
        ),
        ({"inner": {"sise": 1}}, r"unknown key\(s\) \['outer.inner.sise'\]"),
        ({"rate": "fast"}, r"outer.rate='fast' must be a number"),
        ({"flag": 1}, r"outer.flag=1 must be true or false"),
        ({"limit": True}, r"outer.limit=True must be a number or null"),
        ({"inner": {"size": 2.0}}, r"outer.inner.size=2.0 must be an integer"),
        ({"inner": {"names": "x"}}, r"outer.inner.names='x' must be a list of strings"),
        ({"rate": 2}, r"outer.rate=2 must be a number in \(0, 1\)"),
        ([1, 2], r"outer must be a mapping of Outer fields"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_valid(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_config(Outer, values)


def test_missing_required_keys_are_named() -> None:
    @dataclasses.dataclass
    class Needs:
        name: str
        size: int = 1

    with pytest.raises(ConfigError, match=r"missing key\(s\) \['spec.name'\]"):
        from_config(Needs, {"size": 2}, "spec")


def test_plain_resolves_interpolations_and_copies() -> None:
    node = OmegaConf.create({"a": 1, "b": "${a}", "c": [{"d": (1, 2)}]})
    assert plain(node) == {"a": 1, "b": 1, "c": [{"d": [1, 2]}]}
    assert plain({"x": (1, [2])}) == {"x": [1, [2]]}


def test_atomic_write_leaves_the_old_file_and_no_temporary_on_failure(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "a" / "summary.json", {"b": 1, "a": [2]})
    assert json.loads(target.read_text()) == {"a": [2], "b": 1} and target.read_text().endswith("\n")

    def explode(handle) -> None:
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, explode)
    assert json.loads(target.read_text()) == {"a": [2], "b": 1}
    assert os.listdir(target.parent) == ["summary.json"]


def test_torch_save_atomic_round_trips(tmp_path: Path) -> None:
    path = torch_save_atomic(tmp_path / "x.pt", {"w": torch.arange(3)})
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))


def test_run_dir_names_its_files(tmp_path: Path) -> None:
    run = RunDir(str(tmp_path))
    assert (run.trials.name, run.checkpoint.name, run.summary.name, run.controller.name) == (
        "trials.jsonl",
        "checkpoint.pt",
        "summary.json",
        "controller.pt",
    )
    assert (run.config, run.hydra_config) == (tmp_path / "config.yaml", tmp_path / ".hydra" / "config.yaml")


def test_atomic_writes_keep_the_umask_and_clear_what_a_killed_writer_left(tmp_path) -> None:
    target = tmp_path / "summary.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname().replace(".", "-")
    orphan = tmp_path / f".summary.json.{host}.{dead.stdout.strip()}.abc123.tmp"  # its writer was killed
    live = tmp_path / f".summary.json.{host}.{os.getpid()}.def456.tmp"  # this process: a write in progress
    orphan.write_text("partial")
    live.write_text("partial")
    old = os.umask(0o027)  # a group-readable setup
    io_module._umask.cache_clear()
    try:
        write_json_atomic(target, {"ok": True})
    finally:
        os.umask(old)
        io_module._umask.cache_clear()
    assert json.loads(target.read_text()) == {"ok": True}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # as open() would make it, not mkstemp's 0600
    assert not orphan.exists() and live.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_raw_crafted_pickle_is_named_as_holding_more_than_tensors(protocol, tmp_path) -> None:
    """torch's reader stops at protocol 5's first opcode; the message must still say what the file holds."""
    marker, path = tmp_path / "ran", tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"payload": WritesAFile(marker)}, protocol=protocol))
    with pytest.raises(UnreadableFile, match=r"holds more than tensors and plain containers \(it names io.open\)"):
        torch_load_safe(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UnreadableFile, match="is damaged, truncated or not a file torch.save wrote"):
        torch_load_safe(path)
    assert not marker.exists()
