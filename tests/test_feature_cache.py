"""FeatureCache: content-addressed, atomic, corruption-tolerant, shared by worker processes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from mnms.data.feature_cache import FeatureCache

KEY = {"kind": "test", "encoder": "demo", "options": {"n": 3, "range": [1, 4]}, "data": {"train": "abc"}}


def features(seed: int = 0, size: int = 1000) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(size, 8, generator=generator), "ids": torch.arange(size)}


class Counter:
    """A ``compute`` callable that records how often it ran."""

    def __init__(self, seed: int = 0) -> None:
        self.calls, self.seed = 0, seed

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return features(self.seed)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix != ".pt"]


def test_second_cache_object_reads_disk_without_computing(tmp_path: Path) -> None:
    first, compute = FeatureCache(tmp_path), Counter()
    stored = first.get_or_compute(KEY, compute)
    assert compute.calls == 1 and first.stats()["misses"] == 1 and first.hits == 0

    second = FeatureCache(tmp_path)
    loaded = second.get_or_compute(KEY, compute)
    assert compute.calls == 1
    assert (second.hits, second.misses, second.disk_hits) == (1, 0, 1)
    assert loaded.keys() == stored.keys() and all(torch.equal(loaded[k], stored[k]) for k in stored)

    second.get_or_compute(KEY, compute)  # now from the in-process memo
    assert second.stats()["memory_hits"] == 1 and compute.calls == 1


def test_file_layout_and_canonical_key(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(KEY, Counter())
    h = FeatureCache.digest(KEY)
    assert len(h) == 64 and (tmp_path / h[:2] / f"{h}.pt").is_file()
    assert cache.path_for(KEY) == tmp_path / h[:2] / f"{h}.pt"
    # Key order does not matter, values do.
    assert FeatureCache.digest(dict(reversed(list(KEY.items())))) == h
    assert FeatureCache.digest({**KEY, "data": {"train": "abd"}}) != h


def test_non_json_key_is_rejected() -> None:
    with pytest.raises(TypeError, match="plain JSON"):
        FeatureCache.digest({"tensor": torch.zeros(1)})


def test_compute_must_return_dict_of_tensors(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(TypeError, match=r"dict\[str, Tensor\]"):
        cache.get_or_compute(KEY, lambda: {"x": [1, 2, 3]})  # type: ignore[dict-item]
    assert not any(tmp_path.rglob("*.pt")) and temp_files(tmp_path) == []


def test_memory_only_cache_is_a_bounded_lru() -> None:
    cache, computes = FeatureCache(None, memory_items=2), [Counter(i) for i in range(3)]
    for i, compute in enumerate(computes):
        cache.get_or_compute({"i": i}, compute)
    cache.get_or_compute({"i": 2}, computes[2])  # still memoised
    cache.get_or_compute({"i": 0}, computes[0])  # evicted (oldest), so recomputed
    assert [c.calls for c in computes] == [2, 1, 1]
    assert cache.stats()["memory_entries"] == 2 and cache.path_for({"i": 0}) is None


def test_returned_dict_cannot_change_the_memo(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(KEY, Counter()).pop("x")
    assert "x" in cache.get_or_compute(KEY, Counter())


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    for i in range(5):
        cache.get_or_compute({"i": i}, Counter(i))
    assert len(list(tmp_path.rglob("*.pt"))) == 5 and temp_files(tmp_path) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-dict"])
def test_unreadable_file_is_recomputed_and_rewritten(tmp_path: Path, damage: str) -> None:
    FeatureCache(tmp_path).get_or_compute(KEY, Counter())
    path = FeatureCache(tmp_path).path_for(KEY)
    assert path is not None
    if damage == "garbage":
        path.write_bytes(b"definitely not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([torch.zeros(1)], path)

    cache, compute = FeatureCache(tmp_path), Counter()
    result = cache.get_or_compute(KEY, compute)
    assert compute.calls == 1 and cache.misses == 1 and cache.stats()["rewrites"] == 1
    assert torch.equal(result["x"], features()["x"])
    fresh = FeatureCache(tmp_path)
    fresh.get_or_compute(KEY, Counter())  # the rewritten file is readable again
    assert fresh.disk_hits == 1 and fresh.misses == 0


def test_a_misplaced_file_is_recomputed_not_served_for_another_key(tmp_path: Path, caplog) -> None:
    other = {**KEY, "data": {"train": "another task"}}
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(other, Counter(seed=1))
    cache.path_for(KEY).parent.mkdir(parents=True, exist_ok=True)
    cache.path_for(other).rename(cache.path_for(KEY))  # say, a cache dir merged by hand
    fresh, compute = FeatureCache(tmp_path), Counter(seed=0)
    result = fresh.get_or_compute(KEY, compute)
    assert compute.calls == 1 and fresh.stats()["rewrites"] == 1
    assert torch.equal(result["x"], features(seed=0)["x"]) and "another task" in caplog.text
    assert set(result) == {"x", "ids"}  # the stored key is the cache's, never a feature
    assert FeatureCache(tmp_path).get_or_compute(KEY, Counter()).keys() == {"x", "ids"}


def test_a_feature_may_not_take_the_key_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="may not be named '__key__'"):
        FeatureCache(tmp_path).get_or_compute(KEY, lambda: {"__key__": torch.zeros(1)})


def _writer(root: str, keys: int, barrier: mp.synchronize.Barrier, seed: int) -> dict[str, int]:
    """Worker: for each key, wait for the other writer so both miss and write at once."""
    cache = FeatureCache(root, memory_items=0)
    for i in range(keys):
        barrier.wait()
        cache.get_or_compute({"race": i}, lambda i=i: features(seed=i, size=100_000))
    return cache.stats()


def test_processes_missing_together_compute_once_and_never_expose_a_partial_file(tmp_path: Path) -> None:
    keys = 12
    context = mp.get_context("spawn")  # no fork of a process that already runs torch threads
    barrier = context.Manager().Barrier(2)
    paths = [FeatureCache(tmp_path).path_for({"race": i}) for i in range(keys)]
    reads = 0
    with context.Pool(2) as pool:
        results = [pool.apply_async(_writer, (str(tmp_path), keys, barrier, s)) for s in range(2)]
        while not all(r.ready() for r in results):  # read while the writers replace files
            for path in paths:
                if path is not None and path.exists():
                    assert torch.load(path, weights_only=True)["x"].shape == (100_000, 8)
                    reads += 1
        stats = [r.get(timeout=120) for r in results]
    assert reads > 0
    assert all(s["hits"] + s["misses"] == keys for s in stats)
    # Both missed every key at once (the barrier); the entry lock let only one compute it.
    assert sum(s["misses"] for s in stats) == keys
    assert temp_files(tmp_path) == []
    for i in range(keys):
        cache = FeatureCache(tmp_path)
        loaded = cache.get_or_compute({"race": i}, Counter())
        assert cache.disk_hits == 1 and torch.equal(loaded["x"], features(seed=i, size=100_000)["x"])
