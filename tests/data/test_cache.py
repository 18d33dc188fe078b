"""The decoded-slice cache: reused when nothing changed, rebuilt when a file did, safe to share."""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from braingan.data.cache import SliceCache, cache_key
from braingan.data.dataset import SliceDataset
from braingan.data.layouts import DatasetError, SliceRecord
from braingan.data.sampler import InfiniteSampler
from helpers.runs import tmpfs

WritePng = Callable[[Path, np.ndarray], Path]


def record(path: Path, label: int = 0) -> SliceRecord:
    return SliceRecord(path=path, subject=path.stem, slice=0, label=label, split="train")


@pytest.fixture
def slices(write_png: WritePng, tmp_path: Path) -> list[SliceRecord]:
    """Eight 16 x 16 slices; slice i is the constant 10 * (i + 1), label i % 3."""
    paths = [write_png(tmp_path / "images" / f"s{i}.png", np.full((16, 16), 10 * (i + 1), np.uint8)) for i in range(8)]
    return [record(p, i % 3) for i, p in enumerate(paths)]


def cached(records: list[SliceRecord], cache_dir: Path, **kwargs) -> SliceDataset:
    return SliceDataset(records, 16, cache_dir=cache_dir, progress=False, **kwargs)


def test_key_follows_paths_sizes_mtimes_and_policy(slices: list[SliceRecord]) -> None:
    paths = [r.path for r in slices]
    key = cache_key(paths, 16, 1, "pad")
    assert cache_key(paths, 16, 1, "pad") == key
    assert (
        len(
            {
                key,
                cache_key(paths, 32, 1, "pad"),
                cache_key(paths, 16, 3, "pad"),
                cache_key(paths, 16, 1, "crop"),
                cache_key(paths[::-1], 16, 1, "pad"),
                cache_key(paths[1:], 16, 1, "pad"),
            }
        )
        == 6
    )
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched, same bytes
    assert cache_key(paths, 16, 1, "pad") != key


def test_cache_is_reused_when_nothing_changed(slices: list[SliceRecord], tmp_path: Path) -> None:
    first = cached(slices, tmp_path / "cache")
    assert not first.cache_hit and first.cache_path is not None
    assert sorted(p.suffix for p in first.cache_path.parent.iterdir()) == [".json", ".npy"]
    # Mark the cached pixels (a valid edit of the cache, not of the images): a reuse shows the
    # mark, a fresh decode would not.
    writable = np.load(first.cache_path, mmap_mode="r+")
    writable[0, 0, 0, 0] = 255
    writable.flush()
    del writable
    before = first.cache_path.stat()
    second = cached(slices, tmp_path / "cache")
    assert second.cache_hit and second.cache_path == first.cache_path
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    assert second.images[0, 0, 0, 0] == 255 and second[0][0][0, 0, 1] == 10
    after = first.cache_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.labels.tolist() == [i % 3 for i in range(8)]  # labels come from the records


def test_cache_is_rebuilt_when_a_file_changes(slices: list[SliceRecord], tmp_path: Path, write_png: WritePng) -> None:
    first = cached(slices, tmp_path / "cache")
    assert first[3][0].unique().tolist() == [40]
    stat = slices[3].path.stat()
    write_png(slices[3].path, np.full((16, 16), 200, np.uint8))  # same size, new pixels
    os.utime(slices[3].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = cached(slices, tmp_path / "cache")
    assert not second.cache_hit and second.cache_path != first.cache_path
    assert second[3][0].unique().tolist() == [200]
    assert np.array_equal(np.delete(second.images, 3, 0), np.delete(first.images, 3, 0))
    assert first.cache_path.exists()  # other caches are left alone
    assert cached(slices, tmp_path / "cache").cache_hit


def test_incomplete_or_foreign_cache_is_rebuilt(slices: list[SliceRecord], tmp_path: Path) -> None:
    first = cached(slices, tmp_path / "cache")
    meta = first.cache_path.with_suffix(".json")
    meta.unlink()  # as if the build had crashed before its last step
    assert not cached(slices, tmp_path / "cache").cache_hit
    meta.write_text("{not json")
    assert not cached(slices, tmp_path / "cache").cache_hit
    assert cached(slices, tmp_path / "cache").cache_hit


def test_a_failed_build_leaves_no_files(tmp_path: Path) -> None:
    cache = SliceCache.locate(tmp_path / "cache", [tmp_path / "a.png"], 4, 1, "pad")

    def fill(out: np.ndarray) -> tuple[list[int], dict]:
        out[:] = 7
        raise KeyboardInterrupt  # e.g. Ctrl-C halfway through decoding

    with pytest.raises(KeyboardInterrupt):
        cache.build((2, 1, 4, 4), fill)
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.load() is None


def test_bad_files_are_remembered_by_the_cache(slices: list[SliceRecord], tmp_path: Path) -> None:
    corrupt = tmp_path / "images" / "s2.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError) as fresh:
        cached(slices, tmp_path / "cache")
    with pytest.raises(DatasetError) as reused:  # the cache was written; the error is the same
        cached(slices, tmp_path / "cache")
    assert str(reused.value) == str(fresh.value) and "s2.png" in str(fresh.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = cached(slices, tmp_path / "cache", skip_bad=True)
    assert kept.cache_hit and len(caught) == 1 and "s2.png" in str(caught[0].message)
    assert len(kept) == 7 and [r.path.name for r, _ in kept.skipped] == ["s2.png"]
    values = [10 * (i + 1) for i in range(8) if i != 2]
    assert kept.images[:, 0, 0, 0].tolist() == values
    assert kept.labels.tolist() == [i % 3 for i in range(8) if i != 2]


def test_conversion_warning_is_repeated_on_reuse(tmp_path: Path) -> None:
    from PIL import Image

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 3000, np.uint16)).save(deep)
    for expected_hit in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = cached([record(deep)], tmp_path / "cache")
        assert ds.cache_hit == expected_hit and np.all(ds.images == 255)
        assert len(caught) == 1
        assert str(caught[0].message).startswith("converted 1 of 1 images to 8-bit grayscale")


def test_pickling_carries_the_path_not_the_pixels(slices: list[SliceRecord], tmp_path: Path) -> None:
    ds = SliceDataset(slices, 64, cache_dir=tmp_path / "cache", progress=False)
    blob = pickle.dumps(ds)
    assert len(blob) < ds.images.nbytes // 8  # the pixels alone are 8 x 64 x 64 = 32 KiB
    clone = pickle.loads(blob)
    assert isinstance(clone.images, np.memmap) and np.array_equal(clone.images, ds.images)
    buffer = io.BytesIO()
    torch.save(ds[5], buffer)  # items are plain tensors
    assert clone[5][0].dtype == torch.uint8 and torch.equal(clone[5][0], ds[5][0])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_read_the_cache_like_the_main_process(slices: list[SliceRecord], tmp_path: Path, context: str) -> None:
    ds = cached(slices, tmp_path / "cache")

    def first_batches(num_workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=4,
            sampler=InfiniteSampler(len(ds), seed=5),
            num_workers=num_workers,
            drop_last=True,
            multiprocessing_context=context if num_workers else None,
        )
        batches = iter(loader)
        return [next(batches) for _ in range(5)]  # 20 images: crosses two epochs

    in_process, in_workers = first_batches(0), first_batches(2)
    for (images, labels), (images_w, labels_w) in zip(in_process, in_workers, strict=True):
        assert images.dtype == images_w.dtype == torch.uint8 and images.shape == (4, 1, 16, 16)
        assert torch.equal(images, images_w) and torch.equal(labels, labels_w)
    order = [i for images, _ in in_process for i in (images[:, 0, 0, 0] // 10 - 1).tolist()]
    stream = iter(InfiniteSampler(8, seed=5))
    assert order == [next(stream) for _ in range(20)]


def test_cache_files_get_the_mode_of_a_plain_write(slices: list[SliceRecord], tmp_path: Path) -> None:
    """A cache shared through BRAINGAN_CACHE must be readable by other users (mkstemp alone makes 0600)."""
    old = os.umask(0o022)
    try:
        dataset = cached(slices, tmp_path / "cache")
    finally:
        os.umask(old)
    files = sorted(dataset.cache_path.parent.iterdir())
    assert [p.suffix for p in files] == [".json", ".npy"]
    assert [oct(p.stat().st_mode & 0o777) for p in files] == ["0o644", "0o644"]


def test_a_read_only_cache_dir_decodes_in_memory_with_a_warning(slices: list[SliceRecord], tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True):
        with pytest.warns(UserWarning, match=r"dataset.cache_dir=.* cannot be written \(Read-only file system\)"):
            dataset = cached(slices, tmp_path / "ro" / "cache")
    assert dataset.cache_path is None and not dataset.cache_hit
    assert [int(dataset[i][0].max()) for i in range(len(dataset))] == [10 * (i + 1) for i in range(8)]
