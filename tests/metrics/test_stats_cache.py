"""The real-statistics cache: a hit skips extraction; any change in files or setup misses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from braingan.metrics.stats_cache import load_or_compute, stats_key

SHA = "a" * 64


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(4):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * (10 + i))
        paths.append(path)
    return paths


class CountingCompute:
    """compute_fn stand-in: seeded random features [N, 8], counting its calls."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.random.default_rng(self.calls).standard_normal((self.n, 8)).astype(np.float32)


def test_second_call_is_a_hit_and_skips_compute(tmp_path, files):
    compute = CountingCompute(len(files))
    first, hit1 = load_or_compute(tmp_path / "cache", files, 64, "pad", SHA, compute)
    second, hit2 = load_or_compute(tmp_path / "cache", files, 64, "pad", SHA, compute)
    assert (hit1, hit2) == (False, True) and compute.calls == 1
    np.testing.assert_array_equal(second.features, first.features)
    assert second.features.dtype == np.float32 and second.features.shape == (4, 8)
    np.testing.assert_array_equal(second.stats.mean, first.stats.mean)
    np.testing.assert_array_equal(second.stats.cov, first.stats.cov)
    assert second.stats.num == 4 and second.key == first.key and second.path == first.path
    assert second.meta["extractor_sha256"] == SHA and second.meta["resolution"] == 64
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]  # no temporaries
    assert first.path.name == f"real-64px-pad-{first.key}.npz"


def test_key_follows_files_and_setup(files):
    base = stats_key(files, 64, "pad", SHA)
    assert stats_key(files, 64, "pad", SHA) == base
    assert stats_key(files, 128, "pad", SHA) != base
    assert stats_key(files, 64, "crop", SHA) != base
    assert stats_key(files, 64, "pad", "b" * 64) != base
    assert stats_key(files, 64, "pad", SHA, version=2) != base
    assert stats_key(files[::-1], 64, "pad", SHA) != base
    assert stats_key(files, 64, "pad", SHA, img_channels=3) != base  # RGB decode: other features
    assert stats_key(files[:-1], 64, "pad", SHA) != base
    stat = os.stat(files[0])
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = stats_key(files, 64, "pad", SHA)
    assert touched != base
    mtime = os.stat(files[1]).st_mtime_ns
    files[1].write_bytes(b"longer content than before")
    os.utime(files[1], ns=(mtime, mtime))  # same mtime, new size
    assert stats_key(files, 64, "pad", SHA) != touched


def test_changes_recompute(tmp_path, files):
    compute = CountingCompute(len(files))
    cache = tmp_path / "cache"
    load_or_compute(cache, files, 64, "pad", SHA, compute)
    stat = os.stat(files[2])
    os.utime(files[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    _, hit = load_or_compute(cache, files, 64, "pad", SHA, compute)
    assert not hit and compute.calls == 2
    _, hit = load_or_compute(cache, files, 64, "pad", "c" * 64, compute)
    assert not hit and compute.calls == 3
    _, hit = load_or_compute(cache, files, 32, "pad", "c" * 64, compute)
    assert not hit and compute.calls == 4
    _, hit = load_or_compute(cache, files, 32, "pad", "c" * 64, compute)
    assert hit and compute.calls == 4


def test_an_unreadable_cache_file_is_recomputed(tmp_path, files):
    compute = CountingCompute(len(files))
    stats, _ = load_or_compute(tmp_path, files, 64, "pad", SHA, compute)
    stats.path.write_bytes(b"truncated")
    again, hit = load_or_compute(tmp_path, files, 64, "pad", SHA, compute)
    assert not hit and compute.calls == 2 and again.path == stats.path
    assert load_or_compute(tmp_path, files, 64, "pad", SHA, compute)[1]


def test_bad_features_are_refused(tmp_path, files):
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        load_or_compute(tmp_path, files, 64, "pad", SHA, lambda: np.zeros(4))
