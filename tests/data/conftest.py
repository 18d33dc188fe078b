"""Fixtures for the data tests: small real image trees written into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 [H, W] or [H, W, 3] array as a PNG, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def write_png() -> Callable[[Path, np.ndarray], Path]:
    """The PNG writer as a fixture (test modules cannot import conftest reliably)."""
    return _write_png


@pytest.fixture
def oasis_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: an OASIS-layout tree whose image i (in sorted order) is constant 10 * (i + 1).

    Subjects "001".."00<subjects>" go to train, then one subject each to validate and test.
    """

    def make(subjects: int = 3, slices: int = 4, size: int = 32) -> Path:
        root = tmp_path / "oasis"
        value = 10
        splits = ["train"] * subjects + ["validate", "test"]
        for index, split in enumerate(splits):
            for n in range(slices):
                name = f"case_{index + 1:03d}_slice_{n}.nii.png"
                image = np.full((size, size), value % 256, dtype=np.uint8)
                _write_png(root / f"keras_png_slices_{split}" / name, image)
                value += 10
        return root

    return make
