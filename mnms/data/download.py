"""Downloads named in task specs: what to fetch, and fetching it verified against a pinned SHA-256.

A spec pins each download's hash so that every run trains on byte-identical data; a file whose
hash does not match is never kept, and a verified file is never fetched twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from mnms.data.task_files import SPLITS, task_error
from mnms.utils.config import unknown_keys
from mnms.utils.io import atomic_write

TIMEOUT_S = 60.0  # per socket operation, so a stalled server fails instead of hanging a sweep
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """A file fetched once into `<data_dir>/<task>/raw/<filename>` and used as `split`'s file."""

    url: str
    sha256: str  # pinned, so every run trains on byte-identical data
    split: str
    filename: str = ""  # default: the last segment of the URL path

    @classmethod
    def parse(cls, entry: Download | Mapping[str, Any], task: str, where: str) -> Download:
        """A checked download from a spec entry (a dict as written in YAML); problems name the
        task and `where` the entry came from."""

        def check(ok: bool, what: str, fix: str) -> None:
            if not ok:
                raise task_error(task, f"invalid {what} in {where}", fix)

        keys = [f.name for f in dataclasses.fields(cls)]
        check(
            isinstance(entry, Download)
            or (
                isinstance(entry, Mapping)
                and {"url", "sha256", "split"} <= set(entry)
                and not unknown_keys(entry, keys)
            ),
            f"downloads entry {entry!r}",
            f"give url, sha256 and split, optionally filename (valid keys: {keys})",
        )
        item = entry if isinstance(entry, Download) else cls(**entry)
        url = urlparse(str(item.url))
        check(url.scheme in ("http", "https", "file"), f"download url {item.url!r}", "use an http(s):// URL")
        check(
            re.fullmatch(r"[0-9a-fA-F]{64}", str(item.sha256)) is not None,
            f"sha256 {item.sha256!r}",
            "give the file's 64-hex-digit SHA-256 as a quoted string, e.g. from `sha256sum FILE`",
        )
        check(item.split in SPLITS, f"download split {item.split!r}", f"use one of {SPLITS}")
        filename = item.filename or Path(url.path).name
        check(
            bool(filename) and Path(filename).name == filename,
            f"download filename {filename!r} for {item.url}",
            "add `filename:` with a plain file name such as data.csv",
        )
        return cls(item.url, item.sha256.lower(), item.split, filename)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large downloads need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(url: str, sha256: str, target: Path, *, task: str, timeout: float = TIMEOUT_S) -> Path:
    """`target`, downloaded from `url` unless already present with the expected hash.

    The body streams into an atomic write of `target` that raises, so leaves nothing behind,
    unless its hash matches: an interrupted or wrong download never reaches `target`."""
    if target.is_file() and sha256_of(target) == sha256:
        return target

    def download(out: BinaryIO) -> None:
        actual = _stream(url, out, target.name, timeout)
        if actual != sha256:
            raise task_error(
                task,
                f"the file downloaded from {url} has SHA-256 {actual}, but the spec expects {sha256}",
                "check that the URL points at the intended file; if the file legitimately changed, "
                "inspect it and put its new hash in the spec's `sha256:`",
            )

    try:
        return atomic_write(target, download)
    except OSError as err:  # URLError, HTTPError and timeouts are all OSErrors
        raise task_error(
            task,
            f"could not download {url} to {target} ({err})",
            f"check the URL and the network, or place the file at {target} yourself",
        ) from None


def _stream(url: str, out: BinaryIO, label: str, timeout: float) -> str:
    """Copy the response body to `out`, returning its hex SHA-256."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "mnms"})  # some hosts refuse urllib's default
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with urllib.request.urlopen(request, timeout=timeout) as response, progress:
        bar = progress.add_task(f"download {label}", total=int(response.headers.get("Content-Length") or 0) or None)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            progress.advance(bar, len(chunk))
    return digest.hexdigest()
