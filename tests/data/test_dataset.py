"""Decoding slices: value range, shapes, channels, padding, deep images and bad files."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braingan.data.dataset import SliceDataset, load_image
from braingan.data.layouts import DatasetError, SliceRecord

WritePng = Callable[[Path, np.ndarray], Path]


def record(path: Path, label: int = 0) -> SliceRecord:
    return SliceRecord(path=path, subject=path.stem, slice=0, label=label, split="train")


def gradient(height: int, width: int) -> np.ndarray:
    """uint8 [H, W] covering 0..255 exactly, including both ends."""
    return np.linspace(0, 255, height * width).round().astype(np.uint8).reshape(height, width)


def test_values_map_exactly_to_minus_one_one(write_png: WritePng, tmp_path: Path) -> None:
    pixels = gradient(32, 32)
    ds = SliceDataset([record(write_png(tmp_path / "g.png", pixels))], 32, progress=False)
    image, label = ds[0]
    assert image.dtype == torch.float32 and image.shape == (1, 32, 32)
    expected = torch.from_numpy(pixels).double().div(127.5).sub(1).float()  # [32, 32]
    assert torch.allclose(image[0], expected, atol=1e-6)
    assert image.min().item() == -1.0 and image.max().item() == 1.0
    assert label.dtype == torch.int64 and label.shape == () and label.item() == 0
    assert ds.images.dtype == np.uint8 and ds.images.shape == (1, 1, 32, 32)
    assert np.array_equal(ds.images[0, 0], pixels)


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("source", [16, 48])
def test_resize_to_resolution_keeps_constant_images_constant(
    write_png: WritePng, tmp_path: Path, resolution: int, source: int
) -> None:
    path = write_png(tmp_path / "c.png", np.full((source, source), 90, np.uint8))
    ds = SliceDataset([record(path)], resolution, progress=False)
    assert ds.images.shape == (1, 1, resolution, resolution)
    assert np.all(ds.images == 90)  # Lanczos weights sum to one
    assert ds[0][0].shape == (1, resolution, resolution)


def test_downsampling_is_antialiased(write_png: WritePng, tmp_path: Path) -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    ds = SliceDataset([record(write_png(tmp_path / "k.png", checker))], 16, progress=False)
    interior = ds.images[0, 0, 2:-2, 2:-2].astype(int)
    assert np.all(np.abs(interior - 127.5) < 10)  # averaged to mid grey, not aliased


def test_three_channels_from_rgb_and_from_gray(write_png: WritePng, tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 120, 250
    gray = np.full((8, 8), 77, np.uint8)
    records = [
        record(write_png(tmp_path / "rgb.png", rgb)),
        record(write_png(tmp_path / "g.png", gray)),
    ]
    ds = SliceDataset(records, 8, img_channels=3, progress=False)
    assert ds.images.shape == (2, 3, 8, 8)
    assert [int(ds.images[0, c, 0, 0]) for c in range(3)] == [10, 120, 250]
    assert np.all(ds.images[1] == 77)
    # and the grayscale conversion of the RGB image uses PIL's ITU-R 601 luma weights
    ds1 = SliceDataset(records[:1], 8, img_channels=1, progress=False)
    assert int(ds1.images[0, 0, 0, 0]) == round((10 * 299 + 120 * 587 + 250 * 114) / 1000)


@pytest.mark.parametrize("height,width", [(10, 20), (20, 10)])
def test_non_square_is_centered_and_zero_padded(
    write_png: WritePng, tmp_path: Path, height: int, width: int
) -> None:
    path = write_png(tmp_path / "r.png", np.full((height, width), 255, np.uint8))
    plane = SliceDataset([record(path)], 20, progress=False)[0][0][0]  # [20, 20]
    expected = -torch.ones(20, 20)
    if height < width:
        expected[5:15, :] = 1.0
    else:
        expected[:, 5:15] = 1.0
    assert torch.equal(plane, expected)


def test_sixteen_bit_png_is_scaled_by_its_maximum(tmp_path: Path) -> None:
    deep = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I")
    assert load_image(path, 2, 1)[0].tolist() == [[0, 64], [128, 255]]


def test_labels_and_num_classes(write_png: WritePng, tmp_path: Path) -> None:
    paths = [write_png(tmp_path / f"{i}.png", gradient(4, 4)) for i in range(3)]
    ds = SliceDataset([record(p, label) for p, label in zip(paths, [0, 2, 1])], 4, progress=True)
    assert ds.num_classes == 3
    assert [int(ds[i][1]) for i in range(3)] == [0, 2, 1]
    assert [r.path for r in ds.records] == paths


def test_all_bad_files_are_listed_in_one_error(write_png: WritePng, tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", gradient(64, 64))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png at all")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)  # incompressible
    Image.fromarray(noise).save(buffer, "PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DatasetError) as info:
        SliceDataset([record(good), record(truncated), record(corrupt)], 64, progress=False)
    lines = str(info.value).splitlines()
    assert lines[0] == "2 images could not be read: corrupt.png, truncated.png"
    assert len(lines) == 3 and str(corrupt) in lines[1] and str(truncated) in lines[2]


def test_bad_arguments(write_png: WritePng, tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", gradient(4, 4))
    with pytest.raises(DatasetError, match="img_channels=2"):
        SliceDataset([record(path)], 4, img_channels=2, progress=False)
    with pytest.raises(DatasetError, match="no images"):
        SliceDataset([], 4, progress=False)
