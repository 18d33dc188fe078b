"""The decoded-slice cache: one uint8 .npy [N, C, R, R], memory-mapped, plus a JSON beside it.

Decoding thousands of PNGs takes minutes; reading the decoded array takes nothing. So on first
use the dataset decodes into a cache file, and later runs (and every DataLoader worker) map that
file read-only and share its pages through the OS page cache.

    <cache_dir>/slices-<R>px-<C>ch-<fit>-<key>.npy    uint8 [N, C, R, R], the readable images
    <cache_dir>/slices-<R>px-<C>ch-<fit>-<key>.json   metadata; written last, marks completeness

The key hashes the format version, resolution, channels, fit policy and, for every file in
order, its absolute path, size and mtime (ns): touching, replacing, adding, removing or
reordering a file gives a new key and so a new cache; nothing changed reuses the old one. Labels
and subjects are not in the cache (they come from the records). Old caches are never deleted.

Both files are written under temporary names and renamed into place, the JSON last, so a crash
or a second process never sees a half cache; two processes building the same key at once both
finish and write identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braingan.utils.io import atomic_path, plain_mode, temporary_file, update_with_files

CACHE_VERSION = 1  # bump whenever the decoded pixels or the metadata layout would change
KEY_CHARS = 20  # hex digits of the SHA-256 kept in file names (80 bits)
COPY_ROWS = 256  # rows per chunk when compacting out unreadable images

# fill(array) decodes into the writable [N, C, R, R] array and returns (rows to keep, metadata)
Fill = Callable[[np.ndarray], tuple[Sequence[int], dict]]


def cache_key(
    paths: Sequence[str | os.PathLike],  # the image files, in dataset order
    resolution: int,  # model side R in pixels
    img_channels: int,  # 1 or 3
    fit: str,  # pad | crop | resize
) -> str:
    """Hex digest identifying a decode of `paths` (by path, size and mtime) under one policy."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, resolution, img_channels, fit]).encode())
    update_with_files(digest, paths)
    return digest.hexdigest()[:KEY_CHARS]


@dataclass(frozen=True)
class SliceCache:
    """The two files of one cache key; `load` reuses them, `build` writes them."""

    array_path: Path  # the .npy holding uint8 [N, C, R, R]
    meta_path: Path  # the .json beside it; present only once the cache is complete
    key: str  # cache_key(...) of the files and policy

    @classmethod
    def locate(
        cls,
        cache_dir: str | os.PathLike,  # folder holding caches (created on build)
        paths: Sequence[str | os.PathLike],  # the image files, in dataset order
        resolution: int,  # model side R in pixels
        img_channels: int,  # 1 or 3
        fit: str,  # pad | crop | resize
    ) -> SliceCache:
        key = cache_key(paths, resolution, img_channels, fit)
        name = f"slices-{resolution}px-{img_channels}ch-{fit}-{key}"
        stem = Path(cache_dir).expanduser().absolute() / name
        return cls(stem.with_suffix(".npy"), stem.with_suffix(".json"), key)

    def load(self) -> tuple[np.ndarray, dict] | None:
        """(read-only memmap [N, C, R, R], metadata) of a complete cache, or None when absent."""
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("version") != CACHE_VERSION or meta.get("key") != self.key:
                return None
            array = np.load(self.array_path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if array.dtype != np.uint8 or list(array.shape) != meta.get("shape"):
            return None
        return array, meta["contents"]

    def build(self, shape: tuple[int, int, int, int], fill: Fill) -> tuple[np.ndarray, dict]:
        """Decode through `fill` into a new cache of `shape` [N, C, R, R]; return it as `load` does.

        Rows that `fill` does not keep are compacted out. When it keeps none, nothing is written
        and the returned array has zero rows.
        """
        folder = self.array_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        temporaries: list[Path] = []

        def temporary() -> Path:
            temporaries.append(temporary_file(self.array_path))
            return temporaries[-1]

        started = time.perf_counter()
        try:
            array = np.lib.format.open_memmap(temporary(), "w+", np.uint8, shape)  # [N, C, R, R]
            kept, contents = fill(array)
            kept = [int(i) for i in kept]
            if not kept:
                return np.zeros((0, *shape[1:]), np.uint8), contents
            if len(kept) < shape[0]:
                array = _compact(array, kept, temporary())
            array.flush()
            assert array.filename is not None  # a memmap of a file knows its name
            final = Path(array.filename)
            del array  # unmap before the rename
            plain_mode(final)  # a cache shared through BRAINGAN_CACHE is read by other users
            os.replace(final, self.array_path)
            meta = {
                "version": CACHE_VERSION,
                "key": self.key,
                "shape": [len(kept), *shape[1:]],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.perf_counter() - started, 3),
                "contents": contents,
            }
            with atomic_path(self.meta_path) as tmp:
                tmp.write_text(json.dumps(meta, indent=1) + "\n")
        finally:
            for path in temporaries:
                path.unlink(missing_ok=True)
        loaded = self.load()
        if loaded is None:
            raise OSError(f"the slice cache {self.array_path} vanished right after it was written")
        return loaded


def _compact(array: np.memmap, kept: list[int], path: Path) -> np.memmap:
    """Copy rows `kept` of `array` into a new .npy at `path`, chunk by chunk; return its memmap."""
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (len(kept), *array.shape[1:]))
    for start in range(0, len(kept), COPY_ROWS):
        rows = kept[start : start + COPY_ROWS]
        out[start : start + len(rows)] = array[rows]
    return out
