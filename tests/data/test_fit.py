"""Fit policy: pad / crop / resize to the model square and back to the native size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from braingan.data.fit import FIT_MODES, Geometry, fit_image, most_common_size
from braingan.data.layouts import DatasetError


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W] random pixels in 1..255 (never 0, so padding is recognisable)."""
    return np.random.default_rng(seed).integers(1, 256, (height, width), dtype=np.uint8)


def model_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image)[None, None]  # [1, 1, R, R]


def test_pad_256x240_round_trips_exactly_at_256() -> None:
    pixels = noise(240, 256)  # ADNI: 256 wide, 240 high
    geometry = Geometry(resolution=256, width=256, height=240, fit="pad")
    square = np.asarray(fit_image(Image.fromarray(pixels), geometry.resolution, geometry.fit))  # [256, 256]
    assert square.shape == (256, 256)
    assert np.all(square[:8] == 0) and np.all(square[248:] == 0)  # 8 rows of black each side
    assert np.array_equal(square[8:248], pixels)  # no resampling at all
    assert geometry.native_size == (256, 240)
    back = geometry.to_native(square[None, None])  # [1, 1, 240, 256]
    assert back.dtype == np.uint8 and np.array_equal(back[0, 0], pixels)
    as_float = torch.from_numpy(square[None, None].astype(np.float32) / 127.5 - 1)
    back_float = geometry.to_native(as_float)
    assert back_float.dtype == torch.float32 and back_float.shape == (1, 1, 240, 256)
    assert torch.equal(back_float[0, 0], torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1))


@pytest.mark.parametrize("width,height", [(256, 240), (240, 256)])
def test_pad_at_32_shrinks_the_long_side_and_centres_the_short(width: int, height: int) -> None:
    image = Image.fromarray(np.full((height, width), 200, np.uint8))
    square = np.asarray(fit_image(image, 32, "pad"))  # 240 * 32 / 256 = 30 pixels of content
    rows = square if width > height else square.T  # padded rows first
    assert square.shape == (32, 32)
    assert np.all(rows[1:31] == 200) and np.all(rows[[0, 31]] == 0)
    geometry = Geometry(32, width, height, "pad")
    assert geometry.content_box == ((0, 1, 32, 30) if width > height else (1, 0, 30, 32))
    back = geometry.to_native(np.stack([square, square])[:, None])  # [2, 1, H, W]
    assert back.shape == (2, 1, height, width) and np.all(back == 200)


def test_crop_keeps_the_central_square_at_native_scale() -> None:
    pixels = np.full((228, 260), 255, np.uint8)  # OAI knee: 260 wide, 228 high
    pixels[:, 16:244] = 100  # the central 228 x 228 square; the 16-column edges are cut off
    square = np.asarray(fit_image(Image.fromarray(pixels), 32, "crop"))
    assert square.shape == (32, 32) and np.all(square == 100)
    geometry = Geometry(32, 260, 228, "crop")
    assert geometry.native_size == (228, 228)
    back = geometry.to_native(square[None, None])
    assert back.shape == (1, 1, 228, 228) and np.all(back == 100)
    # at R = min(W, H) the crop is exact, without resampling
    textured = noise(228, 260)
    exact = np.asarray(fit_image(Image.fromarray(textured), 228, "crop"))
    assert np.array_equal(exact, textured[:, 16:244])


def test_resize_is_anisotropic_and_scales_back() -> None:
    pixels = np.full((228, 260), 77, np.uint8)
    pixels[:114] = 177  # top half brighter
    square = np.asarray(fit_image(Image.fromarray(pixels), 32, "resize"))
    assert square.shape == (32, 32)
    assert np.all(square[:14] == 177) and np.all(square[18:] == 77)  # no padding, halves kept
    back = Geometry(32, 260, 228, "resize").to_native(square[None, None])
    assert back.shape == (1, 1, 228, 260)
    assert np.all(back[0, 0, :90] == 177) and np.all(back[0, 0, 140:] == 77)  # away from the step


@pytest.mark.parametrize("fit", FIT_MODES)
def test_a_square_image_at_the_resolution_is_untouched(fit: str) -> None:
    pixels = noise(32, 32)
    geometry = Geometry(32, 32, 32, fit)
    square = np.asarray(fit_image(Image.fromarray(pixels), 32, fit))
    assert np.array_equal(square, pixels)
    assert np.array_equal(geometry.to_native(square[None, None])[0, 0], pixels)


def test_pad_keeps_the_mode_and_pads_rgb_with_black() -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[...] = (10, 120, 250)
    square = fit_image(Image.fromarray(rgb), 20, "pad")
    assert square.mode == "RGB" and square.size == (20, 20)
    array = np.asarray(square)
    assert np.all(array[5:15] == (10, 120, 250)) and np.all(array[:5] == 0)


def test_to_native_preserves_tensor_dtype_and_checks_shape() -> None:
    images = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    back = Geometry(16, 40, 30, "pad").to_native(images)  # content 16 x 12 -> resampled to 40 x 30
    assert back.dtype == torch.float64 and back.shape == (3, 2, 30, 40)
    with pytest.raises(ValueError, match=r"\[N, C, 16, 16\]"):
        Geometry(16, 40, 30).to_native(torch.zeros(3, 1, 8, 8))


def test_invalid_fit_is_one_line_listing_the_modes() -> None:
    with pytest.raises(DatasetError) as info:
        Geometry(32, 32, 32, fit="stretch")
    assert str(info.value) == "dataset.fit='stretch' is not one of: pad | crop | resize"
    with pytest.raises(DatasetError, match="pad | crop | resize"):
        fit_image(Image.new("L", (4, 4)), 4, "squash")


def test_geometry_round_trips_through_a_dict() -> None:
    geometry = Geometry(256, 256, 240, "crop")
    assert geometry.to_dict() == {"resolution": 256, "width": 256, "height": 240, "fit": "crop"}
    assert Geometry.from_dict({**geometry.to_dict(), "future_key": 1}) == geometry


def test_most_common_size_breaks_ties_deterministically() -> None:
    assert most_common_size([(256, 240)] * 3 + [(260, 228)] * 5) == (260, 228)
    tie = [(240, 256), (256, 240), (100, 100), (100, 100)]
    assert most_common_size(tie[2:] + tie[:2]) == (100, 100)  # the most common wins
    assert most_common_size(tie[:2]) == most_common_size(tie[1::-1]) == (256, 240)  # order-free
    assert most_common_size({(10, 10): 2, (20, 20): 2}) == (20, 20)  # then the larger area


def test_to_display_keeps_native_aspect_at_model_scale() -> None:
    images = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    pad = Geometry(resolution=32, width=260, height=228, fit="pad")
    shown = pad.to_display(images)
    left, top, w, h = pad.content_box
    assert shown.shape == (2, 1, 28, 32) and (w, h) == (32, 28)
    assert torch.equal(shown, images[..., top : top + 28, :])  # the padding cut off, no resampling
    resize = Geometry(resolution=32, width=260, height=228, fit="resize").to_display(images)
    assert resize.shape == (2, 1, 28, 32)
    crop = Geometry(resolution=32, width=260, height=228, fit="crop")
    assert crop.to_display(images) is images
    square = Geometry(resolution=32, width=256, height=256)
    assert square.to_display(images) is images  # never upsampled to the scanner's size
