"""On-disk + in-process cache for precomputed features (dicts of tensors).

Children are trained thousands of times on the same (task, split, encoder config); whatever
can be computed once is stored here. Several worker processes may share one root, so files
are written atomically (temp file in the same directory, then ``os.replace``): a reader sees
either no file or a complete one. A miss is computed under a per-entry file lock
(a short-lived ``<h>.lock`` next to the entry, POSIX ``flock``), so processes that share a root and miss
the same entry at once compute it once: the others wait and then read its file. A file
that cannot be read (truncated by a crash, foreign format) counts as a miss and is rewritten.
Each file also holds its own key, checked on read, so a file copied or moved to another
entry's place is recomputed instead of silently serving another task's features.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mnms.utils.io import torch_load_safe, torch_save_atomic

try:
    import fcntl
except ImportError:  # Windows: no lock, so two processes may compute the same entry (still correct)
    fcntl = None

log = logging.getLogger(__name__)

# Bump when the file layout or the meaning of keys changes: old files are then never read.
FORMAT_VERSION = 2  # 2: each file holds its key (KEY_FIELD)
KEY_FIELD = "__key__"  # the entry's canonical key, as UTF-8 bytes in a uint8 tensor

Features = dict[str, torch.Tensor]


class FeatureCache:
    """Content-addressed store of ``dict[str, Tensor]`` keyed by a JSON-able mapping.

    Files live at ``<root>/<h[:2]>/<h>.pt`` where ``h`` is the SHA-256 of the canonical JSON
    of ``{"format": FORMAT_VERSION, "key": key}``. ``root=None`` keeps entries in memory only.
    The in-process LRU holds at most ``memory_items`` entries (0 disables it) so repeated
    children in one process do not re-read disk. Returned tensors are shared with the memo:
    treat them as read-only (clone before training them in place).
    """

    def __init__(self, root: str | Path | None, memory_items: int = 32) -> None:
        if memory_items < 0:
            raise ValueError(f"memory_items must be >= 0, got {memory_items}")
        self.root = None if root is None else Path(root)
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self.memory_items = memory_items
        self._memo: OrderedDict[str, Features] = OrderedDict()
        self.memory_hits = 0
        self.disk_hits = 0
        self.misses = 0
        self.rewrites = 0  # unreadable files that were recomputed

    @property
    def hits(self) -> int:
        """Entries served without calling ``compute`` (memory or disk)."""
        return self.memory_hits + self.disk_hits

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "memory_hits": self.memory_hits,
            "disk_hits": self.disk_hits,
            "rewrites": self.rewrites,
            "memory_entries": len(self._memo),
        }

    @staticmethod
    def digest(key: Mapping[str, Any]) -> str:
        """SHA-256 of the canonical JSON of ``key`` (sorted keys, no whitespace, no NaN)."""
        return hashlib.sha256(_canonical(key)).hexdigest()

    def path_for(self, key: Mapping[str, Any]) -> Path | None:
        """Where the entry for ``key`` is (or would be) stored; None for a memory-only cache."""
        if self.root is None:
            return None
        h = self.digest(key)
        return self.root / h[:2] / f"{h}.pt"

    def get_or_compute(self, key: Mapping[str, Any], compute: Callable[[], Features]) -> Features:
        """Return the entry for ``key``, calling ``compute`` only if neither memory nor disk has it."""
        h = self.digest(key)
        if h in self._memo:
            self._memo.move_to_end(h)
            self.memory_hits += 1
            return dict(self._memo[h])
        path = self.path_for(key)
        features = self._compute(compute, key) if path is None else self._load_or_compute(path, compute, key)
        self._remember(h, features)
        return dict(features)

    def _load_or_compute(self, path: Path, compute: Callable[[], Features], key: Mapping[str, Any]) -> Features:
        existed = path.exists()
        features = self._read(path, key) if existed else None
        if features is None:
            with _entry_lock(path):
                # Another process may have written the entry while this one waited for the lock.
                features = None if existed else self._read(path, key)
                if features is None:
                    features = self._compute(compute, key)
                    torch_save_atomic(path, {**features, KEY_FIELD: _key_tensor(key)})
                    return features
        self.disk_hits += 1
        return features

    def _compute(self, compute: Callable[[], Features], key: Mapping[str, Any]) -> Features:
        features = _check_features(compute(), key)
        if KEY_FIELD in features:
            raise ValueError(f"features for {key} may not be named {KEY_FIELD!r}: the cache stores the key there")
        self.misses += 1
        return features

    def _read(self, path: Path, key: Mapping[str, Any]) -> Features | None:
        """The features in ``path`` if it holds ``key``'s entry; None (recompute) for any other file."""
        if not path.exists():
            return None
        try:
            stored = _check_features(torch_load_safe(path), path)
            held = stored.pop(KEY_FIELD, None)
            if held is None or held.dtype != torch.uint8 or bytes(held.tolist()) != _canonical(key):
                found = "no key" if held is None else f"the key {bytes(held.tolist())[:200]!r}"
                raise ValueError(f"it holds {found}, not {_canonical(key)[:200]!r} (a misplaced file)")
            return stored
        except Exception as error:  # any unreadable or misplaced file is recomputed, never fatal
            log.warning("feature cache: unusable %s (%s: %s); recomputing", path, type(error).__name__, error)
            self.rewrites += 1
            return None

    def _remember(self, h: str, features: Features) -> None:
        if self.memory_items == 0:
            return
        self._memo[h] = features
        self._memo.move_to_end(h)
        while len(self._memo) > self.memory_items:
            self._memo.popitem(last=False)


def _canonical(key: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``key`` with the format version: what names an entry and what its file holds."""
    try:
        text = json.dumps(
            {"format": FORMAT_VERSION, "key": key},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache key must be plain JSON data (str/int/float/bool/list/dict), got {key!r}") from error
    return text.encode("utf-8")


def _key_tensor(key: Mapping[str, Any]) -> torch.Tensor:
    return torch.tensor(list(_canonical(key)), dtype=torch.uint8)


def _check_features(features: object, origin: object) -> Features:
    if not isinstance(features, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in features.items()
    ):
        raise TypeError(f"features for {origin} must be a dict[str, Tensor], got {type(features).__name__}")
    return features


@contextmanager
def _entry_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file (the OS releases it if the holder dies).

    The holder deletes the lock file before releasing it, so none are left behind. A
    process already waiting then gets the lock on the deleted file, while a newcomer may
    lock a new one; both re-read the entry first, so at worst a failed computation is
    retried twice at once, which the atomic write keeps correct.
    """
    if fcntl is None:
        yield
        return
    lock = path.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
