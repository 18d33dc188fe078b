"""Cache of real-image feature statistics: extract once per data set, extractor and policy.

    <cache_dir>/real-<R>px-<fit>-<key>.npz
        features  float32 [N, D]   for KID and precision/recall
        mean      float64 [D]      }  FeatureStats for FID
        cov       float64 [D, D]   }
        num       int64 []         N
        meta      str []           JSON: key, version, resolution, fit, extractor_sha256, files

The key hashes the format version, the resolution, the fit policy, the extractor's SHA-256 and,
for every file in order, its absolute path, size and mtime (ns): touching, replacing, adding,
removing or reordering a file, changing the resolution or fit, or swapping the weights gives a
new key and so a fresh extraction; nothing changed reuses the file. The .npz is written under a
temporary name and renamed into place, so a crash never leaves a half file under a cache name.
Old entries are never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braingan.metrics.fid import FeatureStats
from braingan.utils.io import atomic_path, update_with_files

STATS_VERSION = 1  # bump whenever the features or the file layout would change
KEY_CHARS = 20  # hex digits of the SHA-256 kept in file names (80 bits)


def stats_key(
    paths: Sequence[str | os.PathLike],  # the real image files, in order
    resolution: int,  # side R the images are brought to before extraction
    fit: str,  # fit policy: pad | crop | resize
    extractor_sha256: str,  # SHA-256 of the feature extractor's weights file
    version: int = STATS_VERSION,  # cache format version
    img_channels: int = 1,  # channels the images are decoded to
) -> str:
    """Hex digest identifying the features of `paths` (by path, size and mtime) under one setup."""
    header = json.dumps([version, int(resolution), str(fit), str(extractor_sha256), int(img_channels)])
    digest = hashlib.sha256(header.encode())
    update_with_files(digest, paths)
    return digest.hexdigest()[:KEY_CHARS]


@dataclass(frozen=True)
class RealStats:
    """The cached features of a real set and their Gaussian statistics."""

    features: np.ndarray  # float32 [N, D]
    stats: FeatureStats  # num, mean [D], cov [D, D] (float64)
    key: str  # stats_key(...) it was stored under
    path: Path  # the .npz holding it
    meta: dict  # what the key was made of (no file list), for reports


def cache_file(cache_dir: str | os.PathLike, key: str, resolution: int, fit: str) -> Path:
    return Path(cache_dir) / f"real-{int(resolution)}px-{fit}-{key}.npz"


def _read(path: Path, key: str) -> RealStats | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("key") != key:
                return None
            stats = FeatureStats(num=int(data["num"]), mean=data["mean"], cov=data["cov"])
            return RealStats(features=data["features"], stats=stats, key=key, path=path, meta=meta)
    except (OSError, ValueError, KeyError):  # absent or unreadable: compute afresh
        return None


def _write(path: Path, features: np.ndarray, stats: FeatureStats, meta: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            features=features,
            mean=stats.mean,
            cov=stats.cov,
            num=np.int64(stats.num),
            meta=np.array(json.dumps(meta)),
        )


def load_or_compute(
    cache_dir: str | os.PathLike,  # folder holding the .npz files (created on write)
    paths: Sequence[str | os.PathLike],  # the real image files, in order
    resolution: int,  # side R the images are brought to
    fit: str,  # fit policy: pad | crop | resize
    extractor_sha256: str,  # InceptionFeatures.sha256
    compute_fn: Callable[[], np.ndarray],  # extracts the features [N, D] on a miss
    img_channels: int = 1,  # channels the images are decoded to
) -> tuple[RealStats, bool]:  # (statistics, True when read from the cache)
    key = stats_key(paths, resolution, fit, extractor_sha256, img_channels=img_channels)
    path = cache_file(cache_dir, key, resolution, fit)
    cached = _read(path, key)
    if cached is not None:
        return cached, True
    features = np.asarray(compute_fn(), dtype=np.float32)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"compute_fn must return features [N, D] with N >= 2, got {features.shape}")
    stats = FeatureStats.from_features(features)
    meta = {
        "key": key,
        "version": STATS_VERSION,
        "resolution": int(resolution),
        "fit": fit,
        "extractor_sha256": extractor_sha256,
        "num_files": len(paths),
    }
    try:
        _write(path, features, stats, meta)
    except OSError as error:  # a read-only or full cache folder: the statistics are still good
        warnings.warn(
            f"cannot write the real-feature cache {path} ({error.strerror}); the next evaluation computes them again",
            stacklevel=2,
        )
    return RealStats(features=features, stats=stats, key=key, path=path, meta=meta), False
