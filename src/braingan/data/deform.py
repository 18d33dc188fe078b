"""Seeded per-subject deformations that turn one template brain into many pseudo-subjects.

The demo dataset (see `demo.py`) has a single real brain, the MNI152 template. To give it the
structure of a real multi-subject dataset, every pseudo-subject draws ONE deformation that is
applied to all of its slices, so slices of a subject stay correlated (as in real volumes) while
subjects differ in pose, shape and contrast:

- geometry: a small 2-D affine (rotation, isotropic scale, translation) plus a smooth elastic
  displacement field (gaussian-smoothed white noise, a few pixels in amplitude);
- slice position: a small whole-subject shift along the axial axis;
- intensity: gamma, gain and a gentle smooth multiplicative bias field (like MRI coil shading).

Everything is a pure function of the numpy Generator passed in, so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SubjectDeformation:
    """One pseudo-subject's deformation; the same for every slice of that subject."""

    coords: np.ndarray  # [2, H, W] float32: source (row, col) sampled for each output pixel
    gamma: float  # intensity exponent applied to [0, 1] values (>1 darkens mid-tones)
    gain: float  # global intensity multiplier
    bias: np.ndarray  # [H, W] float32 multiplicative bias field, close to 1
    z_shift: int  # whole-subject offset of the slice positions, in template slices (mm)


def sample_deformation(
    rng: np.random.Generator,
    size: int,
    max_rotation_deg: float = 4.0,  # rotation drawn from +-this, in degrees
    scale_range: tuple[float, float] = (0.93, 1.07),  # isotropic scale of the brain
    max_translation_px: float = 4.0,  # shift drawn from +-this per axis, pixels
    elastic_px: tuple[float, float] = (1.5, 3.5),  # peak elastic displacement, pixels
    elastic_sigma_px: float = 24.0,  # smoothness of the elastic field, pixels
    gamma_range: tuple[float, float] = (0.85, 1.15),  # intensity gamma
    gain_range: tuple[float, float] = (0.92, 1.08),  # intensity gain
    bias_strength: float = 0.08,  # peak |bias - 1|
    max_z_shift: int = 2,  # slice offset drawn from +-this, slices
) -> SubjectDeformation:
    """Draw one subject's deformation for `size` x `size` slices from `rng`."""
    # Geometry: output pixel p samples the template at A (p - c) + c + t + u(p).
    angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = rng.uniform(*scale_range)
    shift = rng.uniform(-max_translation_px, max_translation_px, size=2)
    center = (size - 1) / 2.0
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale  # inverse map shrinks by 1/scale
    grid = np.mgrid[0:size, 0:size].astype(np.float64) - center  # [2, H, W] (row, col)
    rows = cos * grid[0] - sin * grid[1] + center + shift[0]
    cols = sin * grid[0] + cos * grid[1] + center + shift[1]

    noise = rng.standard_normal((2, size, size))  # [2, H, W]
    field = ndimage.gaussian_filter(noise, sigma=(0, elastic_sigma_px, elastic_sigma_px))
    magnitude = np.sqrt((field**2).sum(axis=0)).max()
    field *= rng.uniform(*elastic_px) / max(magnitude, 1e-12)
    coords = np.stack([rows + field[0], cols + field[1]]).astype(np.float32)  # [2, H, W]

    # Intensity: a random quadratic polynomial over [-1, 1]^2, scaled to peak |bias - 1|.
    y, x = np.mgrid[-1.0 : 1.0 : size * 1j, -1.0 : 1.0 : size * 1j]
    c = rng.uniform(-1.0, 1.0, size=5)
    poly = c[0] * x + c[1] * y + c[2] * x * y + c[3] * (x * x - 0.5) + c[4] * (y * y - 0.5)
    poly *= rng.uniform(0.3, 1.0) * bias_strength / max(np.abs(poly).max(), 1e-12)
    return SubjectDeformation(
        coords=coords,
        gamma=float(rng.uniform(*gamma_range)),
        gain=float(rng.uniform(*gain_range)),
        bias=(1.0 + poly).astype(np.float32),
        z_shift=int(rng.integers(-max_z_shift, max_z_shift + 1)),
    )


def spline_coefficients(slices: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of each slice, [S, H, W] float32 (see apply_deformation)."""
    return np.stack([ndimage.spline_filter(s, order=3, output=np.float32) for s in slices])


def apply_deformation(
    slices: np.ndarray,
    deformation: SubjectDeformation,
    coefficients: np.ndarray | None = None,
) -> np.ndarray:
    """Warp and re-contrast a stack of slices with one subject's deformation.

    slices: [S, H, W] float in [0, 1] with background exactly 0. Returns [S, H, W] uint8.
    coefficients: optional `spline_coefficients(slices)`, [S, H, W]; when many subjects warp
    the same template slices, computing them once saves a spline filter per slice.
    Cubic-spline sampling keeps the anatomy sharp. It is evaluated only where a
    nearest-neighbour warp of the brain support lands, which keeps the background exactly 0
    (no spline ringing leaks into it) and is 2-3x faster than warping the whole frame.
    """
    out = np.zeros(slices.shape, dtype=np.uint8)  # [S, H, W]
    if coefficients is None:
        coefficients = spline_coefficients(slices)
    for i, image in enumerate(slices):
        support = ndimage.map_coordinates(
            (image > 0).astype(np.uint8), deformation.coords, order=0, mode="constant", cval=0
        ).astype(bool)  # [H, W] brain pixels after warping
        points = deformation.coords[:, support]  # [2, P] only where the brain lands
        warped = ndimage.map_coordinates(coefficients[i], points, order=3, mode="constant", cval=0.0, prefilter=False)
        value = np.clip(warped, 0.0, 1.0) ** deformation.gamma
        value = value * deformation.gain * deformation.bias[support]
        out[i][support] = np.rint(np.clip(value, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out
