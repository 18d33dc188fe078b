"""Slices decoded once into one uint8 array, served as float tensors in [-1, 1].

A GAN reads every image thousands of times; decoding PNGs each time would make the data loader
the bottleneck at small resolutions. So all images are decoded at construction (threads over
files; PIL releases the GIL while decoding), brought to a common square size, and held as one
contiguous uint8 array [N, C, R, R] (OASIS train at 256: 9,664 x 64 KiB = 0.6 GiB). Worker
processes share it copy-on-write.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from braingan.data.layouts import DatasetError, SliceRecord

MAX_NAMED_FAILURES = 20  # how many bad files the first line of the error names


def load_image(path: os.PathLike, resolution: int, img_channels: int) -> np.ndarray:
    """Read one image as uint8 [C, R, R]: 8-bit gray (C=1) or RGB (C=3), square, resized.

    Images deeper than 8 bits (16-bit PNG/TIFF, float TIFF) are scaled by their own maximum,
    because PIL's plain conversion would clip them. A non-square image is zero-padded to a
    centered square first so the anatomy keeps its aspect ratio; the square is then resized
    with Lanczos (antialiased when shrinking) if its side is not `resolution`.
    """
    with Image.open(path) as image:
        image.load()  # decode now: truncated or corrupt files raise here
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            values = np.asarray(image, dtype=np.float64)
            peak = values.max()
            values = values * (255.0 / peak) if peak > 0 else np.zeros_like(values)
            image = Image.fromarray(np.rint(np.clip(values, 0, 255)).astype(np.uint8))
        image = image.convert("L" if img_channels == 1 else "RGB")
    width, height = image.size
    side = max(width, height)
    if width != height:
        square = Image.new(image.mode, (side, side), 0)
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)  # [R, R] or [R, R, 3]
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # [C, R, R]


class SliceDataset(torch.utils.data.Dataset):
    """Decoded slices with labels; item i is (image [C, R, R] float32 in [-1, 1], label int64)."""

    def __init__(
        self,
        records: Sequence[SliceRecord],  # the slices, e.g. from layouts.discover
        resolution: int,                 # output side length R in pixels
        img_channels: int = 1,           # 1 = grayscale, 3 = RGB
        progress: bool = True,           # show a tqdm bar while decoding
    ) -> None:
        if img_channels not in (1, 3):
            raise DatasetError(f"img_channels={img_channels} must be 1 (grayscale) or 3 (RGB)")
        if resolution < 1:
            raise DatasetError(f"resolution={resolution} must be a positive number of pixels")
        if not records:
            raise DatasetError("the dataset has no images (empty list of slice records)")
        self._records = list(records)
        self._labels = torch.tensor([r.label for r in self._records], dtype=torch.int64)  # [N]
        self._images = self._decode_all(resolution, img_channels, progress)  # [N, C, R, R]

    def _decode_all(self, resolution: int, img_channels: int, progress: bool) -> np.ndarray:
        images = np.empty(
            (len(self._records), img_channels, resolution, resolution), dtype=np.uint8
        )  # [N, C, R, R]
        failures: list[tuple[SliceRecord, str]] = []

        def decode(index: int) -> None:
            record = self._records[index]
            try:
                images[index] = load_image(record.path, resolution, img_channels)
            except Exception as error:  # noqa: BLE001 - any failure is reported per file
                failures.append((record, f"{type(error).__name__}: {error}"))

        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            list(
                tqdm(
                    pool.map(decode, range(len(self._records))),
                    total=len(self._records),
                    desc=f"decoding slices at {resolution}px",
                    unit="img",
                    disable=not progress,
                )
            )
        if failures:
            failures.sort(key=lambda f: str(f[0].path))
            raise DatasetError(_failure_message(failures))
        return images

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self._images[index]).to(torch.float32) / 127.5 - 1.0
        return image, self._labels[index]  # [C, R, R] in [-1, 1], [] int64

    @property
    def images(self) -> np.ndarray:
        """All images as uint8 [N, C, R, R]."""
        return self._images

    @property
    def labels(self) -> torch.Tensor:
        """All labels as int64 [N]."""
        return self._labels

    @property
    def records(self) -> list[SliceRecord]:
        """The slice records, in dataset order."""
        return self._records

    @property
    def num_classes(self) -> int:
        """Number of classes: max label + 1 (1 for an unlabelled dataset)."""
        return int(self._labels.max()) + 1


def _failure_message(failures: list[tuple[SliceRecord, str]]) -> str:
    """First line: how many and which files; then one line per file with the reason."""
    names = [record.path.name for record, _ in failures]
    shown = ", ".join(names[:MAX_NAMED_FAILURES])
    if len(names) > MAX_NAMED_FAILURES:
        shown += f", and {len(names) - MAX_NAMED_FAILURES} more"
    noun = "image" if len(failures) == 1 else "images"
    lines = [f"{len(failures)} {noun} could not be read: {shown}"]
    lines += [f"  {record.path}: {reason}" for record, reason in failures]
    return "\n".join(lines)
