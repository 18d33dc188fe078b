"""Loader benchmark: images per second that the training DataLoader feeds from the slice cache.

    python -m braingan.data.bench [--resolution 256] [--batch-size 32] [--workers 2]
                                  [--images 2048] [--seconds 20] [--cache-dir DIR] [--cold]

Writes (once) a folder of `--images` 8-bit PNG slices (MNI152 template slices with a random
shift, brightness and noise each; plain noise if nilearn is missing) under `--cache-dir`, builds
or reuses the decoded-slice cache of `SliceDataset`, and reads it through
`SliceDataModule.train_dataloader`, the loader training uses. After a warm-up it counts the images delivered to the main process
for `--seconds` and prints one line. `--cold` deletes this benchmark's caches first, so the
cache build is part of the run. The target: >= 2,000 img/s at 256 x 256 with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from braingan.data.datamodule import SliceDataModule

DONE = ".complete"  # marker inside a finished synthetic folder (hidden: no layout lists it)


def _templates(resolution: int) -> np.ndarray:
    """Base slices [S, R, R] float32 in [0, 1]: brain slices if nilearn is there, else noise."""
    try:
        from braingan.data.demo import axial_template, slice_positions

        template = axial_template()  # [Z, 256, 256]
        base = template[slice_positions(template, 64)]  # [64, 256, 256]
    except ImportError:
        base = np.random.default_rng(0).random((64, 256, 256), dtype=np.float32)
    if resolution != base.shape[-1]:
        size = (resolution, resolution)
        base = np.stack([np.asarray(Image.fromarray(b).resize(size)) for b in base])
    return base


def synthetic_folder(
    root: Path,  # where the folder goes; reused when complete
    images: int,  # number of PNG slices
    resolution: int,  # side of the square slices in pixels
) -> Path:
    """A folder of `images` 8-bit R x R PNG slices, written once (built aside, then renamed)."""
    folder = root / f"slices-{resolution}px-{images}"
    if (folder / DONE).exists():
        return folder
    base = _templates(resolution)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))

    def write(index: int) -> None:
        rng = np.random.default_rng(index)
        shift = rng.integers(-8, 9, size=2)
        plane = np.roll(base[index % len(base)], tuple(shift), axis=(0, 1)) * rng.uniform(0.8, 1.2)
        plane = plane + rng.normal(0, 0.02, plane.shape)
        pixels = np.rint(np.clip(plane, 0, 1) * 255).astype(np.uint8)  # [R, R]
        Image.fromarray(pixels).save(staging / f"slice_{index:06d}.png")

    try:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(write, range(images)))
        (staging / DONE).touch()
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete older attempt
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def measure(
    loader: torch.utils.data.DataLoader,  # an endless loader
    seconds: float,  # how long to count after the warm-up
    warmup_batches: int,  # batches drawn first (worker start-up, page cache)
) -> float:
    """Images per second delivered to this process."""
    batches = iter(loader)
    for _ in range(warmup_batches):
        next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images, _ = next(batches)
        count += len(images)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        prog="python -m braingan.data.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=256, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--images", type=int, default=2048, help="synthetic slices to write")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    parser.add_argument("--warmup-batches", type=int, default=20, help="batches before timing")
    parser.add_argument("--cache-dir", type=Path, help="default: <tmp>/braingan-bench")
    parser.add_argument("--cold", action="store_true", help="delete the slice caches first")
    args = parser.parse_args(argv)

    root = args.cache_dir or Path(tempfile.gettempdir()) / "braingan-bench"
    root.mkdir(parents=True, exist_ok=True)
    folder = synthetic_folder(root, args.images, args.resolution)
    cache_dir = root / "cache"
    if args.cold:
        shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    dm = SliceDataModule(  # the training code path itself; every image trains (no hold-out)
        str(folder),
        layout="folder",
        resolution=args.resolution,
        batch_size=args.batch_size,
        num_workers=args.workers,
        cache_dir=str(cache_dir),
        holdout=0.0,
        progress=False,
        subject_regex=r"([^/]+)\.png$",  # every synthetic slice is its own subject
    )
    dm.setup()
    dataset = dm.dataset
    assert dataset is not None  # set by setup()
    opened = time.perf_counter() - start
    rate = measure(dm.train_dataloader(), args.seconds, args.warmup_batches)
    cache = "cache hit" if dataset.cache_hit else "cache built"
    r = args.resolution
    print(
        f"loader: {rate:,.0f} img/s | {r}x{r} uint8, batch {args.batch_size}, "
        f"workers {args.workers}, {len(dataset)} images | {cache} in {opened:.2f} s "
        f"({dataset.cache_path})"
    )
    return rate


if __name__ == "__main__":
    main()
