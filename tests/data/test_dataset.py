"""Decoding slices: uint8 items, shapes, channels, fit policy, deep and colour images, bad files."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braingan.data.dataset import SliceDataset, decode_image
from braingan.data.layouts import DatasetError, SliceRecord

WritePng = Callable[[Path, np.ndarray], Path]


def record(path: Path, label: int = 0) -> SliceRecord:
    return SliceRecord(path=path, subject=path.stem, slice=0, label=label, split="train")


def gradient(height: int, width: int) -> np.ndarray:
    """uint8 [H, W] covering 0..255 exactly, including both ends."""
    return np.linspace(0, 255, height * width).round().astype(np.uint8).reshape(height, width)


def build(records: list[SliceRecord], resolution: int, **kwargs) -> tuple[SliceDataset, list[str]]:
    """The dataset and the messages of every warning its construction emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = SliceDataset(records, resolution, progress=False, **kwargs)
    return dataset, [str(w.message) for w in caught]


def bad_pngs(folder: Path) -> tuple[Path, Path]:
    """A corrupt PNG (a valid signature, then garbage) and a truncated one."""
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png at all")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)  # incompressible
    Image.fromarray(noise).save(buffer, "PNG")
    truncated = folder / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return corrupt, truncated


def test_items_are_the_exact_uint8_pixels(write_png: WritePng, tmp_path: Path) -> None:
    pixels = gradient(32, 32)
    ds = SliceDataset([record(write_png(tmp_path / "g.png", pixels))], 32, progress=False)
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32)
    assert torch.equal(image[0], torch.from_numpy(pixels))
    assert label.dtype == torch.int64 and label.shape == () and label.item() == 0
    assert ds.images.dtype == np.uint8 and ds.images.shape == (1, 1, 32, 32)
    assert ds.cache_path is None and not ds.cache_hit
    assert (ds.geometry.width, ds.geometry.height, ds.geometry.fit) == (32, 32, "pad")
    image[0, 0, 0] = 99  # items are copies: editing one leaves the dataset intact
    assert ds.images[0, 0, 0, 0] == 0


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
    assert (ds.geometry.width, ds.geometry.height) == (source, source)


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
    ds, messages = build(records, 8, img_channels=3)
    assert ds.images.shape == (2, 3, 8, 8) and messages == []  # nothing lossy happened
    assert [int(ds.images[0, c, 0, 0]) for c in range(3)] == [10, 120, 250]
    assert np.all(ds.images[1] == 77)
    # and the grayscale conversion of the RGB image uses PIL's ITU-R 601 luma weights
    ds1, messages = build(records[:1], 8, img_channels=1)
    assert int(ds1.images[0, 0, 0, 0]) == round((10 * 299 + 120 * 587 + 250 * 114) / 1000)
    assert messages == ["converted 1 of 1 images to 8-bit grayscale: 1 RGB (to gray by ITU-R 601 luma, alpha dropped)"]


@pytest.mark.parametrize("height,width", [(10, 20), (20, 10)])
def test_non_square_is_centered_and_zero_padded(write_png: WritePng, tmp_path: Path, height: int, width: int) -> None:
    path = write_png(tmp_path / "r.png", np.full((height, width), 255, np.uint8))
    ds = SliceDataset([record(path)], 20, progress=False)
    expected = torch.zeros(20, 20, dtype=torch.uint8)
    if height < width:
        expected[5:15, :] = 255
    else:
        expected[:, 5:15] = 255
    assert torch.equal(ds[0][0][0], expected)
    assert (ds.geometry.width, ds.geometry.height) == (width, height)


@pytest.mark.parametrize("fit", ["crop", "resize"])
def test_other_fit_policies_reach_the_dataset(write_png: WritePng, tmp_path: Path, fit: str) -> None:
    pixels = np.full((10, 20), 50, np.uint8)
    pixels[:, :5] = pixels[:, 15:] = 250  # only the central 10 x 10 square is 50
    ds = SliceDataset([record(write_png(tmp_path / "w.png", pixels))], 10, fit=fit, progress=False)
    assert ds.geometry.fit == fit
    assert ds.geometry.native_size == ((10, 10) if fit == "crop" else (20, 10))
    if fit == "crop":
        assert np.all(ds.images == 50)  # the 250 edges are cut off
    else:
        assert ds.images[0, 0, :, 0].min() > 200 and ds.images[0, 0, :, 5].max() < 60


def test_mixed_sizes_fit_each_image_from_its_own_size(write_png: WritePng, tmp_path: Path) -> None:
    wide, tall = np.full((10, 20), 255, np.uint8), np.full((20, 10), 255, np.uint8)
    paths = [write_png(tmp_path / f"{i}.png", a) for i, a in enumerate([wide, tall, wide])]
    ds, messages = build([record(p) for p in paths], 20)
    assert np.all(ds.images[0, 0, 5:15] == 255) and np.all(ds.images[0, 0, :5] == 0)
    assert np.all(ds.images[1, 0, :, 5:15] == 255) and np.all(ds.images[1, 0, :, :5] == 0)
    assert (ds.geometry.width, ds.geometry.height) == (20, 10)  # the most common size
    assert len(messages) == 1
    assert "2 sizes (2 at 20x10, 1 at 10x20)" in messages[0] and "native size 20x10" in messages[0]


def test_deep_and_colour_images_convert_with_one_warning(tmp_path: Path) -> None:
    deep = np.linspace(0, 4000, 64).round().astype(np.uint16).reshape(8, 8)  # up to 4000 of 65535
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "gray.png")
    paths = [tmp_path / n for n in ("deep.png", "rgb.png", "gray.png")]
    ds, messages = build([record(p) for p in paths], 8)
    expected = np.rint(deep.astype(np.float64) * 255 / 4000)  # no clipping: 4000 -> 255
    assert np.array_equal(ds.images[0, 0], expected) and ds.images[0].max() == 255
    assert np.all(ds.images[1] == round(200 * 587 / 1000)) and np.all(ds.images[2] == 9)
    assert len(messages) == 1
    assert messages[0].startswith("converted 2 of 3 images to 8-bit grayscale: 1 16-bit (scaled")
    assert "1 RGB (to gray" in messages[0]


def test_sixteen_bit_png_is_scaled_by_its_maximum(tmp_path: Path) -> None:
    deep = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I")
    assert decode_image(path, 2, 1)[0][0].tolist() == [[0, 64], [128, 255]]


def test_float_images_with_negative_values_are_shifted_not_clipped(tmp_path: Path) -> None:
    values = np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert decode_image(tmp_path / "f.tif", 2, 1)[0][0].tolist() == [[0, 64], [128, 255]]


def test_labels_and_num_classes(write_png: WritePng, tmp_path: Path) -> None:
    paths = [write_png(tmp_path / f"{i}.png", gradient(4, 4)) for i in range(3)]
    records = [record(p, label) for p, label in zip(paths, [0, 2, 1], strict=True)]
    ds = SliceDataset(records, 4, progress=True)
    assert ds.num_classes == 3
    assert [int(ds[i][1]) for i in range(3)] == [0, 2, 1]
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 2, 1]
    assert [r.path for r in ds.records] == paths


def test_all_bad_files_are_listed_in_one_error(write_png: WritePng, tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", gradient(64, 64))
    corrupt, truncated = bad_pngs(tmp_path)
    with pytest.raises(DatasetError) as info:
        SliceDataset([record(good), record(truncated), record(corrupt)], 64, progress=False)
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "2 images could not be read: corrupt.png, truncated.png (dataset.skip_bad=true leaves them out)"
    )
    assert len(lines) == 3 and str(corrupt) in lines[1] and str(truncated) in lines[2]


def test_skip_bad_leaves_them_out_with_a_warning(write_png: WritePng, tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", gradient(64, 64))
    corrupt, truncated = bad_pngs(tmp_path)
    records = [record(corrupt, 1), record(good, 2), record(truncated, 3)]
    ds, messages = build(records, 64, skip_bad=True)
    assert len(ds) == 1 and ds.records == [records[1]] and ds.labels.tolist() == [2]
    assert np.array_equal(ds.images[0, 0], gradient(64, 64))
    assert [r.path for r, _ in ds.skipped] == [corrupt, truncated]
    assert len(messages) == 1 and messages[0].startswith("2 images could not be read")
    with pytest.raises(DatasetError, match="no readable image is left"):
        SliceDataset([records[0]], 64, skip_bad=True, progress=False)


def test_bad_arguments(write_png: WritePng, tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", gradient(4, 4))
    with pytest.raises(DatasetError, match="img_channels=2"):
        SliceDataset([record(path)], 4, img_channels=2, progress=False)
    with pytest.raises(DatasetError, match="no images"):
        SliceDataset([], 4, progress=False)
    with pytest.raises(DatasetError, match="dataset.fit='fill' is not one of"):
        SliceDataset([record(path)], 4, fit="fill", progress=False)
