"""Fixtures for the metric tests: the Inception extractor (loaded once) and two folders of real slices.

Inception-v3 costs about 0.1-0.5 s per image on two CPU cores, so every test that needs real
features shares the session-scoped ones below instead of extracting its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SLICES_PER_FOLDER = 40  # per folder; both folders go through Inception twice (here and in fid-helper)


@pytest.fixture(scope="session")
def inception():
    from braingan.metrics.inception import InceptionFeatures

    return InceptionFeatures(batch_size=20)


def _write_slices(folder: Path, slices: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, image in enumerate(slices):
        path = folder / f"slice_{i:03d}.png"
        Image.fromarray(image).save(path)  # uint8 [H, W] -> 8-bit grayscale
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def slice_folders(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """Two folders of 256 x 256 grayscale PNG slices of the MNI152 template.

    a: axial slices evenly spaced over z in [50, 120]; b: over z in [62, 132], each dimmed by a
    seeded gain in [0.8, 1.0]. Different, but both real brain anatomy.
    """
    from braingan.data.demo import axial_template

    template = axial_template()  # [Z, 256, 256] in [0, 1]
    rng = np.random.default_rng(0)
    z_a = np.rint(np.linspace(50, 120, SLICES_PER_FOLDER)).astype(int)
    z_b = np.rint(np.linspace(62, 132, SLICES_PER_FOLDER)).astype(int)
    gains = rng.uniform(0.8, 1.0, size=(SLICES_PER_FOLDER, 1, 1))
    a = np.rint(template[z_a] * 255).astype(np.uint8)
    b = np.rint(template[z_b] * gains * 255).astype(np.uint8)
    root = tmp_path_factory.mktemp("slices")
    return _write_slices(root / "a", a), _write_slices(root / "b", b)


@pytest.fixture(scope="session")
def slice_features(inception, slice_folders) -> tuple[np.ndarray, np.ndarray]:
    """Our Inception features of both folders, float32 [40, 2048] each, in file order."""
    from braingan.metrics.features import extract_features_from_files

    paths_a, paths_b = slice_folders
    return (
        extract_features_from_files(inception, paths_a, batch_size=20, progress=False),
        extract_features_from_files(inception, paths_b, batch_size=20, progress=False),
    )
