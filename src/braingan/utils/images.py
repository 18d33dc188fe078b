"""Image grids and grayscale/RGB PNG writing."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from .io import atomic_path


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 by rounding, the convention of the FID tools."""
    return (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, rows: int | None = None) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> one uint8 image [rows * H, cols * W, C] (C = 1 or 3)."""
    n, c, h, w = images.shape
    rows = rows or max(1, int(math.floor(math.sqrt(n))))
    cols = int(math.ceil(n / rows))
    canvas = torch.zeros(rows * cols, c, h, w, dtype=torch.uint8)
    canvas[:n] = to_uint8(images.cpu())
    canvas = canvas.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return canvas.numpy()


def save_image(array: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an [H, W, C] uint8 array as grayscale (C = 1) or RGB (C = 3) PNG, atomically."""
    mode = "L" if array.shape[2] == 1 else "RGB"
    img = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode=mode)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_grid(images: torch.Tensor, path: str | os.PathLike, rows: int | None = None) -> np.ndarray:
    grid = make_grid(images, rows)
    save_image(grid, path)
    return grid
