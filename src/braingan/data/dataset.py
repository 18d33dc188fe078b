"""Slices decoded once into one uint8 array [N, C, R, R], served as uint8 tensors.

A GAN reads every image thousands of times; decoding PNGs each time would make the data loader
the bottleneck. So every image is decoded once (threads over files; PIL releases the GIL),
converted to 8 bits, brought to R x R by the fit policy (`fit.py`) and stored in one contiguous
uint8 array. With `cache_dir` that array is a cache file (`cache.py`) that later runs reuse and
DataLoader workers map read-only; without it, it lives in memory. Items are uint8 so a batch
crosses the worker -> main process boundary at a quarter of the float size; the training
module converts to float in [-1, 1] on its device.

Conversion to 8 bits (one warning for the whole dataset says how many images and how):
    16-bit, 32-bit integer and float images (PIL modes I;16*, I, F) are scaled linearly so the
        image's own maximum becomes 255 and min(0, its minimum) becomes 0: nothing is clipped,
        and ordinary non-negative images keep 0 as black. NaNs become 0. Each image is scaled
        by itself because MRI intensities have no absolute unit.
    RGB, RGBA, P, LA, CMYK ... become gray by PIL's ITU-R 601 luma (alpha is dropped) when
        img_channels=1; gray images are replicated to RGB when img_channels=3.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from braingan.data.cache import Fill, SliceCache
from braingan.data.fit import Geometry, check_fit, fit_image, most_common_size
from braingan.data.layouts import DatasetError, SliceRecord

UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)  # cache folder errors that fall back
MAX_NAMED_FAILURES = 20  # bad files named on the error's first line
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes deeper than 8 bits
PLAIN_MODES = {1: ("1", "L"), 3: ("1", "L", "RGB")}  # converted without a warning


def to_8bit(image: Image.Image, img_channels: int) -> tuple[Image.Image, str | None]:
    """(image as 8-bit "L" or "RGB", what conversion happened or None); see module docstring.

    Changing what this or `fit.fit_image` produces changes cached pixels: bump
    cache.CACHE_VERSION with it, or old caches would be reused.
    """
    conversion = None
    if image.mode in DEEP_MODES:
        conversion = (
            "16-bit" if image.mode.startswith("I;16") else "32-bit integer" if image.mode == "I" else "floating-point"
        )
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))  # [H, W]
        low, high = min(0.0, float(values.min())), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.rint(scaled).astype(np.uint8))
    elif image.mode not in PLAIN_MODES[img_channels]:
        conversion = image.mode
    return image.convert("L" if img_channels == 1 else "RGB"), conversion


def decode_image(
    path: str | os.PathLike,  # the image file
    resolution: int,  # model side R in pixels
    img_channels: int,  # 1 = grayscale, 3 = RGB
    fit: str = "pad",  # pad | crop | resize (see fit.py)
) -> tuple[np.ndarray, tuple[int, int], str | None]:
    """(uint8 [C, R, R], native (W, H), conversion or None); corrupt files raise."""
    with Image.open(path) as image:
        image.load()  # decode now: truncated or corrupt files raise here
        size = image.size
        eight_bit, conversion = to_8bit(image, img_channels)
    array = np.asarray(fit_image(eight_bit, resolution, fit), dtype=np.uint8)  # [R, R] or [R, R, 3]
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # [C, R, R]
    return array, size, conversion


class SliceDataset(torch.utils.data.Dataset):
    """Decoded slices with labels; item i is (image uint8 [C, R, R], label int64 [])."""

    def __init__(
        self,
        records: Sequence[SliceRecord],  # the slices, e.g. from layouts.discover
        resolution: int,  # model side R in pixels
        img_channels: int = 1,  # 1 = grayscale, 3 = RGB
        *,
        fit: str = "pad",  # pad | crop | resize for non-square images
        cache_dir: str | Path | None = None,  # folder of decoded-slice caches; None = in memory
        skip_bad: bool = False,  # True: leave unreadable images out, with a warning
        progress: bool = True,  # show a tqdm bar while decoding
    ) -> None:
        if img_channels not in (1, 3):
            raise DatasetError(f"img_channels={img_channels} must be 1 (grayscale) or 3 (RGB)")
        if resolution < 1:
            raise DatasetError(f"resolution={resolution} must be a positive number of pixels")
        check_fit(fit)
        if not records:
            raise DatasetError("the dataset has no images (empty list of slice records)")
        records = list(records)
        shape = (len(records), img_channels, resolution, resolution)

        def fill(out: np.ndarray) -> tuple[list[int], dict]:
            return _decode_into(out, records, fit, progress)

        self._cache_path: Path | None = None
        self.cache_hit = False
        if cache_dir is None:
            images, contents = _decode_in_memory(shape, fill)
        else:
            paths = [r.path for r in records]
            cache = SliceCache.locate(cache_dir, paths, resolution, img_channels, fit)
            self._cache_path = cache.array_path
            loaded = cache.load()
            self.cache_hit = loaded is not None
            try:
                images, contents = loaded if loaded is not None else cache.build(shape, fill)
            except OSError as error:
                if error.errno not in UNWRITABLE:
                    raise
                warnings.warn(
                    f"dataset.cache_dir={cache_dir} cannot be written ({error.strerror}); decoding the slices "
                    "into memory without a cache (point dataset.cache_dir or BRAINGAN_CACHE at a writable folder "
                    "to reuse them)",
                    stacklevel=2,
                )
                self._cache_path = None
                images, contents = _decode_in_memory(shape, fill)

        self._images: np.ndarray | None = images  # [N, C, R, R] uint8; None after unpickling
        bad = {int(i): reason for i, _, reason in contents["skipped"]}
        self.skipped: list[tuple[SliceRecord, str]] = [(records[i], r) for i, r in bad.items()]
        self._records = [r for i, r in enumerate(records) if i not in bad]
        if len(self._records) != len(images):
            raise DatasetError(f"the slice cache {self._cache_path} does not match the records")
        if self.skipped and (not skip_bad or not self._records):
            hint = "" if self._records else "; no readable image is left"
            raise DatasetError(_failure_message(self.skipped, hint))
        if self.skipped:
            note = "; left out (dataset.skip_bad=true)"
            warnings.warn(_failure_message(self.skipped, note), stacklevel=2)
        self._labels = torch.tensor([r.label for r in self._records], dtype=torch.int64)  # [N]
        sizes = {_parse_size(text): count for text, count in contents["sizes"].items()}
        width, height = most_common_size(sizes)
        self.geometry = Geometry(resolution, width, height, fit)
        _warn_conversions(contents["conversions"], len(self._records), img_channels)
        _warn_sizes(sizes, self.geometry)

    def __getstate__(self) -> dict:
        """Pickle the cache file's path, not its mapped pixels; each process maps it itself."""
        state = self.__dict__.copy()
        if self._cache_path is not None:
            state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.images[index]))  # [C, R, R] uint8, a copy
        return image, self._labels[index]

    @property
    def images(self) -> np.ndarray:
        """All images as uint8 [N, C, R, R]: a read-only np.memmap when cached."""
        if self._images is None:
            assert self._cache_path is not None  # images are only left unloaded when cached
            self._images = np.load(self._cache_path, mmap_mode="r")
        return self._images

    @property
    def labels(self) -> torch.Tensor:
        """All labels as int64 [N]."""
        return self._labels

    @property
    def records(self) -> list[SliceRecord]:
        """The slice records kept (unreadable ones left out under skip_bad), in dataset order."""
        return self._records

    @property
    def cache_path(self) -> Path | None:
        """The .npy cache file, or None when decoded into memory."""
        return self._cache_path

    @property
    def num_classes(self) -> int:
        """Number of classes: max label + 1 (1 for an unlabelled dataset)."""
        return int(self._labels.max()) + 1


def _decode_in_memory(shape: tuple[int, int, int, int], fill: Fill) -> tuple[np.ndarray, dict]:
    """Decode through `fill` into a new in-memory array of `shape`, keeping the rows it keeps."""
    images = np.empty(shape, dtype=np.uint8)  # [N, C, R, R]
    kept, contents = fill(images)
    return (images if len(kept) == len(images) else images[kept]), contents


def _decode_into(out: np.ndarray, records: list[SliceRecord], fit: str, progress: bool) -> tuple[list[int], dict]:
    """Decode every record into its row of `out` [N, C, R, R]; return (kept rows, contents).

    contents (JSON-ready, stored in the cache): "sizes" {"WxH": count} and "conversions"
    {kind: count} over the kept images, "skipped" [[index, path, reason], ...].
    """
    _, img_channels, resolution, _ = out.shape
    sizes: list[tuple[int, int] | None] = [None] * len(records)
    conversions: list[str | None] = [None] * len(records)
    failures: dict[int, str] = {}

    def decode(index: int) -> None:
        try:
            out[index], sizes[index], conversions[index] = decode_image(
                records[index].path, resolution, img_channels, fit
            )
        except Exception as error:  # noqa: BLE001 - any failure is reported per file
            failures[index] = f"{type(error).__name__}: {error}"

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        jobs = pool.map(decode, range(len(records)))
        desc = f"decoding slices at {resolution}px"
        for _ in tqdm(jobs, total=len(records), desc=desc, unit="img", disable=not progress):
            pass
    kept = [i for i in range(len(records)) if i not in failures]
    kept_sizes = [size for size in (sizes[i] for i in kept) if size is not None]  # every kept image has one
    size_counts = Counter(f"{width}x{height}" for width, height in kept_sizes)
    contents = {
        "sizes": dict(size_counts.most_common()),
        "conversions": dict(Counter(conversions[i] for i in kept if conversions[i]).most_common()),
        "skipped": [[i, str(records[i].path), failures[i]] for i in sorted(failures)],
    }
    return kept, contents


def _parse_size(text: str) -> tuple[int, int]:
    width, height = text.split("x")
    return int(width), int(height)


def _warn_conversions(conversions: dict[str, int], total: int, img_channels: int) -> None:
    """One warning for the whole dataset: how many images were converted to 8 bits, and how."""
    if not conversions:
        return
    target = "grayscale" if img_channels == 1 else "RGB"
    parts = []
    for kind, count in conversions.items():
        if kind in ("16-bit", "32-bit integer", "floating-point"):
            parts.append(f"{count} {kind} (scaled so each image's maximum is 255, not clipped)")
        elif img_channels == 1:
            parts.append(f"{count} {kind} (to gray by ITU-R 601 luma, alpha dropped)")
        else:
            parts.append(f"{count} {kind} (to RGB, alpha dropped)")
    converted = sum(conversions.values())
    warnings.warn(
        f"converted {converted} of {total} images to 8-bit {target}: {', '.join(parts)}",
        stacklevel=3,
    )


def _warn_sizes(sizes: dict[tuple[int, int], int], geometry: Geometry) -> None:
    """One warning when the images do not all have one size."""
    if len(sizes) < 2:
        return
    listed = ", ".join(f"{count} at {w}x{h}" for (w, h), count in sizes.items())
    r = geometry.resolution
    warnings.warn(
        f"the images have {len(sizes)} sizes ({listed}); each is fit to {r}x{r} from its own "
        f"size by dataset.fit={geometry.fit}; native size {geometry.width}x{geometry.height} "
        "(the most common) is used to save generated images",
        stacklevel=3,
    )


def _failure_message(failures: list[tuple[SliceRecord, str]], note: str = "") -> str:
    """First line: how many and which files (+ note); then one line per file with the reason."""
    failures = sorted(failures, key=lambda f: str(f[0].path))
    names = [record.path.name for record, _ in failures]
    shown = ", ".join(names[:MAX_NAMED_FAILURES])
    if len(names) > MAX_NAMED_FAILURES:
        shown += f", and {len(names) - MAX_NAMED_FAILURES} more"
    noun = "image" if len(failures) == 1 else "images"
    hint = note or " (dataset.skip_bad=true leaves them out)"
    lines = [f"{len(failures)} {noun} could not be read: {shown}{hint}"]
    lines += [f"  {record.path}: {reason}" for record, reason in failures]
    return "\n".join(lines)
