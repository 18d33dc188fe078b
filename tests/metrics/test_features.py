"""Batched extraction from tensors, iterables and PNG files, with a cheap stand-in extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braingan.metrics.features import (
    extract_features,
    extract_features_from_files,
    iter_file_batches,
    read_gray_uint8,
)


class MomentExtractor(torch.nn.Module):
    """uint8 [B, C, H, W] -> [B, 2] (mean, max); records the batch sizes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.batches.append(images.shape[0])
        x = images.float().flatten(1)
        return torch.stack([x.mean(1), x.amax(1)], dim=1)


def expected(images: torch.Tensor) -> np.ndarray:
    x = images.float().flatten(1)
    return torch.stack([x.mean(1), x.amax(1)], dim=1).numpy()


def test_tensor_input_is_split_into_batches_in_order():
    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    extractor = MomentExtractor()
    features = extract_features(extractor, images, batch_size=3, progress=False, device="cpu")
    assert extractor.batches == [3, 3, 1]
    assert features.dtype == np.float32 and features.shape == (7, 2)
    np.testing.assert_allclose(features, expected(images), rtol=1e-6)


def test_iterable_of_batches_and_single_images():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    extractor = MomentExtractor()
    features = extract_features(extractor, [images[:2], images[2], images[3:]], progress=True, total=5)
    assert extractor.batches == [2, 1, 2]
    np.testing.assert_allclose(features, expected(images), rtol=1e-6)


def test_nothing_to_extract_raises():
    with pytest.raises(ValueError, match="no images"):
        extract_features(MomentExtractor(), [], progress=False)


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_files_are_read_as_gray_and_batched_by_size(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(3)]
    arrays += [rng.integers(0, 256, (20, 24), dtype=np.uint8) for _ in range(2)]
    paths = [_png(tmp_path / f"{i}.png", a) for i, a in enumerate(arrays)]
    assert [tuple(b.shape) for b in iter_file_batches(paths, batch_size=2)] == [
        (2, 1, 16, 16),
        (1, 1, 16, 16),
        (2, 1, 20, 24),
    ]
    extractor = MomentExtractor()
    features = extract_features_from_files(extractor, paths, batch_size=2, progress=False)
    want = np.concatenate([expected(torch.from_numpy(a)[None, None]) for a in arrays])
    np.testing.assert_allclose(features, want, rtol=1e-6)


def test_rgb_files_become_luma(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    gray = read_gray_uint8(_png(tmp_path / "rgb.png", rgb))
    assert gray.dtype == torch.uint8 and gray.shape == (1, 4, 4)
    luma = round(200 * 299 / 1000 + 100 * 587 / 1000 + 50 * 114 / 1000)  # ITU-R 601
    assert abs(int(gray[0, 0, 0]) - luma) <= 1
    plain = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert torch.equal(read_gray_uint8(_png(tmp_path / "l.png", plain))[0], torch.from_numpy(plain))
