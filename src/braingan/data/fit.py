"""Fit policy: how an image of any size becomes the model's R x R square, and back.

Real scanners do not write squares: ADNI slices are 256 x 240, the OAI knee set 260 x 228.
`dataset.fit` chooses how each image is brought to R x R, from its own size:

    pad     scale so the longer side is R (Lanczos, antialiased; no resampling at all when that
            side already is R), centre the image and pad the shorter side with black (0).
            Nothing is lost; the padding is remembered, so `to_native` crops it off exactly.
    crop    cut the central min(W, H) square and scale it to R. The edges of the longer side
            are lost; `to_native` returns that square at native pixel scale, min(W, H) a side.
    resize  scale each side to R independently (anisotropic); `to_native` scales back.

A `Geometry` records the policy together with the dataset's native size (its most common image
size), so generated images can be saved at the size the scanner wrote. It is stored inside
checkpoints as a plain dict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from braingan.data.layouts import DatasetError
from braingan.utils.serial import DictSerializable

FIT_MODES = ("pad", "crop", "resize")

Box = tuple[int, int, int, int]  # (left, top, width, height) in pixels


def check_fit(fit: str) -> str:
    """Return `fit` if it is a valid mode; otherwise raise a one-line DatasetError."""
    if fit not in FIT_MODES:
        raise DatasetError(f"dataset.fit={fit!r} is not one of: {' | '.join(FIT_MODES)}")
    return fit


def padded_box(width: int, height: int, resolution: int) -> Box:
    """Where a width x height image lands inside the R x R square under fit=pad."""
    scale = resolution / max(width, height)
    inner_w = resolution if width >= height else max(1, round(width * scale))
    inner_h = resolution if height >= width else max(1, round(height * scale))
    return (resolution - inner_w) // 2, (resolution - inner_h) // 2, inner_w, inner_h


def central_square(width: int, height: int) -> Box:
    """The central min(W, H) square of a width x height image (what fit=crop keeps)."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def fit_image(image: Image.Image, resolution: int, fit: str = "pad") -> Image.Image:
    """Bring one PIL image of any size to resolution x resolution under `fit` (same mode)."""
    check_fit(fit)
    width, height = image.size
    if (width, height) == (resolution, resolution):
        return image
    lanczos = Image.Resampling.LANCZOS
    if fit == "resize":
        return image.resize((resolution, resolution), lanczos)
    if fit == "crop":
        left, top, side, _ = central_square(width, height)
        image = image.crop((left, top, left + side, top + side))  # cut first: no edge bleeds in
        return image if side == resolution else image.resize((resolution, resolution), lanczos)
    left, top, inner_w, inner_h = padded_box(width, height, resolution)
    if (inner_w, inner_h) != (width, height):
        image = image.resize((inner_w, inner_h), lanczos)
    square = Image.new(image.mode, (resolution, resolution), 0)
    square.paste(image, (left, top))
    return square


def most_common_size(
    sizes: Mapping[tuple[int, int], int] | Iterable[tuple[int, int]],  # {(W, H): count} or sizes
) -> tuple[int, int]:
    """The most common (W, H); ties go to the larger area, then the larger (W, H)."""
    counts = Counter(sizes) if not isinstance(sizes, Mapping) else Counter(dict(sizes))
    if not counts:
        raise ValueError("most_common_size needs at least one size")
    return max(counts, key=lambda size: (counts[size], size[0] * size[1], size))


@dataclass(frozen=True)
class Geometry(DictSerializable):
    """The model square, the dataset's native image size, and the fit policy between them."""

    resolution: int  # model side R in pixels
    width: int  # native image width W in pixels (the dataset's most common size)
    height: int  # native image height H in pixels
    fit: str = "pad"  # pad | crop | resize (see the module docstring)

    def __post_init__(self) -> None:
        check_fit(self.fit)
        if min(self.resolution, self.width, self.height) < 1:
            raise DatasetError(
                f"Geometry needs positive sizes, got resolution={self.resolution}, "
                f"width={self.width}, height={self.height}"
            )

    @property
    def content_box(self) -> Box:
        """(left, top, width, height) of the native image's content inside the R x R square."""
        if self.fit == "pad":
            return padded_box(self.width, self.height, self.resolution)
        return 0, 0, self.resolution, self.resolution

    @property
    def native_size(self) -> tuple[int, int]:
        """(W', H') that `to_native` returns: (W, H), or (min, min) under fit=crop."""
        if self.fit == "crop":
            side = min(self.width, self.height)
            return side, side
        return self.width, self.height

    @property
    def display_size(self) -> tuple[int, int]:
        """(w, h) that `to_display` returns: the native aspect at the model's scale."""
        if self.fit == "pad":
            return self.content_box[2:]
        if self.fit == "resize":
            scale = self.resolution / max(self.width, self.height)
            return max(1, round(self.width * scale)), max(1, round(self.height * scale))
        return self.resolution, self.resolution

    def to_display(self, images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Model-space images [N, C, R, R] -> [N, C, h, w] with the native aspect at model scale.

        What sample grids show: pad cuts the padding off (no resampling), resize undoes the
        anisotropic stretch, crop is unchanged. Nothing is upsampled beyond the model's R, so
        a 64 x 64 model is shown at 64 pixels, not blown up to the scanner's size.
        """
        if self.fit == "crop" or self.display_size == (self.resolution, self.resolution):
            return images
        if self.fit == "pad":
            left, top, inner_w, inner_h = self.content_box
            content = images[..., top : top + inner_h, left : left + inner_w]
            return content.contiguous() if isinstance(content, torch.Tensor) else np.ascontiguousarray(content)
        return _resize_planes(images, self.display_size)

    def to_native(self, images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Model-space images [N, C, R, R] -> native [N, C, H', W'], same type, dtype and device.

        pad: the content box is cut out exactly and, if its size differs from W x H, resized to
        W x H (so a 256 x 240 dataset at R = 256 round-trips without any resampling).
        crop: the model square is resized to the cropped square at native pixel scale,
        min(W, H) x min(W, H); the cut-off edges cannot be recovered.
        resize: resized back to W x H.
        Resampling is Lanczos through PIL (on the CPU); uint8 results are rounded and clipped
        to [0, 255], float results are not clipped (Lanczos may overshoot slightly).
        """
        if images.ndim != 4 or tuple(images.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"to_native expects [N, C, {self.resolution}, {self.resolution}] images, "
                f"got shape {tuple(images.shape)}"
            )
        left, top, inner_w, inner_h = self.content_box
        content = images[..., top : top + inner_h, left : left + inner_w]  # [N, C, h, w]
        if (inner_w, inner_h) == self.native_size:
            if isinstance(content, torch.Tensor):
                return content.contiguous()
            return np.ascontiguousarray(content)
        return _resize_planes(content, self.native_size)


def _resize_planes(
    images: np.ndarray | torch.Tensor,  # [N, C, h, w], uint8 or floating point
    size: tuple[int, int],  # (W', H') in pixels
) -> np.ndarray | torch.Tensor:
    """Lanczos-resize every [H, W] plane of [N, C, H, W] to size = (W', H'); same type and dtype."""
    if isinstance(images, torch.Tensor):
        host_dtype = torch.uint8 if images.dtype == torch.uint8 else torch.float32
        host = images.detach().to("cpu", host_dtype)
        resized = torch.from_numpy(_resize_planes(host.numpy(), size))
        return resized.to(images.device, images.dtype)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"to_native expects uint8 or floating-point images, got {images.dtype}")
    width, height = size
    planes = images.reshape(-1, *images.shape[-2:])  # [N * C, h, w]
    out = np.empty((planes.shape[0], height, width), dtype=images.dtype)  # [N * C, H', W']
    for index, plane in enumerate(planes):
        dtype = np.uint8 if images.dtype == np.uint8 else np.float32
        picture = Image.fromarray(np.ascontiguousarray(plane, dtype=dtype))  # mode L or F
        out[index] = np.asarray(picture.resize(size, Image.Resampling.LANCZOS))
    return out.reshape(*images.shape[:-2], height, width)
