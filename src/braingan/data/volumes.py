"""3-D MRI volumes (NIfTI, Analyze) to 8-bit axial slices, as plain functions (no Hydra).

    find_volumes     the .nii / .nii.gz / .img files under a folder; an Analyze .img/.hdr pair
                     is one volume (named by its .img), found once whatever the patterns say
    load_volume      nibabel -> float32 [X, Y, Z] in the closest canonical (RAS+) orientation:
                     x runs to the patient's right, y to anterior, z to superior
    foreground_mask  the voxels that count as head/brain: nonzero ones, or those brighter than a
                     fraction of the bright end of the intensities
    normalize        percentile window over the foreground -> uint8, background exactly 0
    select_slices    axial indices by an index range and/or a minimum brain fraction per slice
    axial_slice      one axial slice as displayed: anterior at the top, the patient's right on
                     the image's left (radiological view, as in the demo set)
    fit_canvas       centered zero-pad / crop onto a fixed [width, height], no resampling
    volume_slices    all of the above for one loaded volume: {slice index: uint8 [H, W]}

Every problem with a volume raises `DatasetError` (one line, naming the file and the fix).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from braingan.data.layouts import DatasetError, natural_key
from braingan.utils.io import walk_visible

VOLUME_PATTERNS = ("*.nii", "*.nii.gz", "*.img")  # file-name globs of the default search
_HEADER_SUFFIXES = {".hdr": ".img", ".hdr.gz": ".img.gz"}  # Analyze header -> its image file


def _volume_file(path: Path) -> Path:
    """The file that names a volume: an Analyze header maps to its .img (the pair is one volume)."""
    lower = path.name.lower()
    for header, image in _HEADER_SUFFIXES.items():
        if lower.endswith(header):
            return path.with_name(path.name[: -len(header)] + image)
    return path


def find_volumes(
    root: str | os.PathLike,  # folder searched recursively (symlinks followed)
    patterns: Sequence[str] = VOLUME_PATTERNS,  # globs on file names, case-insensitive
) -> list[Path]:
    """Volume files under `root` matching any pattern, each once, in natural path order.

    Hidden files and folders are skipped. `*.hdr` patterns are allowed: a header stands for its
    Analyze pair and is reported as the .img, so a pair matched by `*.img` and `*.hdr` is one volume.
    """
    root = Path(root)
    wanted = [p.lower() for p in ([patterns] if isinstance(patterns, str) else patterns)]
    found: set[Path] = set()
    for here, files in walk_visible(root):
        for name in files:
            if not name.startswith(".") and any(fnmatch.fnmatchcase(name.lower(), p) for p in wanted):
                found.add(_volume_file(Path(here) / name))
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _orientation(codes: str) -> np.ndarray:
    """nibabel orientation [3, 2] (stored axis -> RAS axis, flip) of axis codes such as "LAS"."""
    letters = tuple(str(codes).upper())
    try:
        ornt = nib.orientations.axcodes2ornt(letters)
    except ValueError:
        ornt = None
    if ornt is None or len(letters) != 3 or np.isnan(ornt).any() or sorted(ornt[:, 0]) != [0, 1, 2]:
        raise DatasetError(f"orientation={codes} is not 3 axis codes like LAS or RAS, one of L/R, A/P, S/I each")
    return ornt


def load_volume(
    path: str | os.PathLike,  # .nii, .nii.gz, or the .img (or .hdr) of an Analyze pair
    orientation: str | None = None,  # axis codes of the stored voxel axes, e.g. "LAS", used
    # instead of the header's affine; None = trust the header
) -> np.ndarray:
    """The volume as float32 [X, Y, Z], reoriented to the closest canonical orientation (RAS+).

    Trailing singleton axes are dropped (OASIS-1 volumes are stored as [176, 208, 176, 1]); a
    true 4-D series is refused. NaNs become 0. Analyze headers carry no real orientation, so
    nibabel assumes radiological (LAS) storage for them; pass `orientation` when that is wrong.
    """
    path = Path(path)
    ornt = None if orientation is None else _orientation(orientation)
    try:
        image: Any = nib.load(path)  # a spatial image (dataobj, affine); nibabel types it as FileBasedImage
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for unreadable files
        raise DatasetError(f"could not read volume {path}: {error}") from error
    shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        kind = "4-D series" if data.ndim > 3 else f"{data.ndim}-D arrays"
        raise DatasetError(
            f"volume {path} has shape {shape}: prepare takes 3-D structural volumes, not {kind}; "
            "extract one 3-D volume first"
        )
    if ornt is None:
        ornt = nib.orientations.io_orientation(image.affine)
    data = nib.orientations.apply_orientation(data, ornt)  # [X, Y, Z], RAS+
    return np.nan_to_num(np.ascontiguousarray(data, dtype=np.float32), copy=False)


def foreground_mask(
    volume: np.ndarray,  # [X, Y, Z] intensities
    threshold: float = 0.0,  # 0 = every nonzero voxel; t > 0 = voxels brighter than t times
    # the `high` percentile of the nonzero voxels (noisy backgrounds)
    high: float = 99.5,  # percentile that `threshold` is relative to
) -> np.ndarray:
    """Boolean [X, Y, Z]: the voxels that count as head/brain rather than background."""
    nonzero = volume != 0
    if threshold <= 0 or not nonzero.any():
        return nonzero
    return volume > threshold * float(np.percentile(volume[nonzero], high))


def normalize(
    volume: np.ndarray,  # [X, Y, Z] intensities
    mask: np.ndarray,  # [X, Y, Z] bool, the foreground
    percentiles: Sequence[float] = (0.5, 99.5),  # low, high percentile of the foreground voxels
) -> np.ndarray:
    """uint8 [X, Y, Z]: the foreground's [low, high] percentile window stretched to [0, 255].

    Values outside the window are clipped, so the brightest foreground voxels are 255;
    voxels outside `mask` are exactly 0. The percentiles ignore the background, which would
    otherwise dominate them. A constant foreground becomes 255.
    """
    low, high = (float(p) for p in percentiles)
    if not 0 <= low < high <= 100:
        raise DatasetError(f"percentiles={list(percentiles)} must satisfy 0 <= low < high <= 100")
    if not mask.any():
        return np.zeros(volume.shape, dtype=np.uint8)
    lo, hi = np.percentile(volume[mask], [low, high])
    if hi > lo:
        scaled = np.clip((volume - lo) / (hi - lo), 0.0, 1.0) * 255.0
    else:
        scaled = np.full(volume.shape, 255.0, dtype=np.float32)
    out = np.rint(scaled).astype(np.uint8)
    out[~mask] = 0
    return out


def brain_fractions(mask: np.ndarray) -> np.ndarray:
    """[Z] fraction of the pixels of each axial slice of `mask` [X, Y, Z] that are foreground."""
    return mask.mean(axis=(0, 1))


def _range_bounds(slice_range: Sequence[float | int | None], depth: int) -> tuple[int, int]:
    """[lo, hi) axial indices of a slice_range: two ints = indices, otherwise fractions in [0, 1]."""
    if len(slice_range) != 2:
        raise DatasetError(f"slice_range={list(slice_range)} must be [lo, hi]")
    lo, hi = slice_range
    values = [v for v in (lo, hi) if v is not None]
    if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        raise DatasetError(f"slice_range={list(slice_range)} must hold numbers (or null ends)")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        lo = 0 if lo is None else int(lo)
        hi = depth if hi is None else int(hi)
        if lo < 0 or hi <= lo:
            raise DatasetError(f"slice_range={list(slice_range)} must be [lo, hi] with 0 <= lo < hi (axial indices)")
        return lo, min(hi, depth)
    if not all(0.0 <= float(v) <= 1.0 for v in values) or (
        lo is not None and hi is not None and float(lo) >= float(hi)
    ):
        raise DatasetError(
            f"slice_range={list(slice_range)}: fractions must satisfy 0 <= lo < hi <= 1 "
            "(two whole numbers are read as axial indices instead)"
        )
    lo = 0 if lo is None else int(round(float(lo) * depth))
    hi = depth if hi is None else int(round(float(hi) * depth))
    return lo, hi


def select_slices(
    fractions: np.ndarray,  # [Z] brain fraction of every axial slice
    slice_range: Sequence[float | int | None] | None = None,  # [lo, hi): axial indices when
    # both are whole numbers, else fractions of Z in
    # [0, 1]; None = the whole axis; either end may be None
    min_brain_fraction: float | None = None,  # keep slices with at least this fraction of
    # foreground pixels; None = no content threshold
    step: int = 1,  # then keep every step-th of the selected slices
) -> np.ndarray:
    """Axial indices to keep, increasing, [S] int64. Range and threshold both apply when given."""
    depth = len(fractions)
    if step < 1:
        raise DatasetError(f"slice_step={step} must be >= 1")
    lo, hi = (0, depth) if slice_range is None else _range_bounds(slice_range, depth)
    keep = np.arange(lo, min(hi, depth), dtype=np.int64)
    if min_brain_fraction is not None:
        if not 0.0 <= float(min_brain_fraction) <= 1.0:
            raise DatasetError(f"min_brain_fraction={min_brain_fraction} must be in [0, 1]")
        keep = keep[fractions[keep] >= float(min_brain_fraction)]
    return keep[::step]


def axial_slice(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k of a RAS+ volume [X, Y, Z] as displayed, [Y, X]: row 0 anterior,
    column 0 the patient's right (radiological view)."""
    return np.ascontiguousarray(volume[::-1, ::-1, k].T)


def fit_canvas(
    image: np.ndarray,  # [H, W]
    canvas: Sequence[int] | None = None,  # [width, height] of the output; None = keep [H, W]
) -> np.ndarray:
    """Center `image` on a zero canvas [height, width], padding or cropping each axis, no resampling."""
    if canvas is None:
        return image
    if len(canvas) != 2 or any(int(c) < 1 for c in canvas):
        raise DatasetError(f"canvas={list(canvas)} must be [width, height] in pixels, or null")
    width, height = (int(c) for c in canvas)
    h, w = image.shape
    out = np.zeros((height, width), dtype=image.dtype)
    # Offsets of the overlap in the source (crop) and the destination (pad).
    sr, dr = max(0, (h - height) // 2), max(0, (height - h) // 2)
    sc, dc = max(0, (w - width) // 2), max(0, (width - w) // 2)
    rows, cols = min(h, height), min(w, width)
    out[dr : dr + rows, dc : dc + cols] = image[sr : sr + rows, sc : sc + cols]
    return out


def volume_slices(
    volume: np.ndarray,  # [X, Y, Z] RAS+, from load_volume
    slice_range: Sequence[float | int | None] | None = None,  # see select_slices
    min_brain_fraction: float | None = None,  # see select_slices
    slice_step: int = 1,  # see select_slices
    percentiles: Sequence[float] = (0.5, 99.5),  # see normalize
    foreground_threshold: float = 0.0,  # see foreground_mask
    canvas: Sequence[int] | None = None,  # see fit_canvas
) -> dict[int, np.ndarray]:
    """The selected axial slices of one volume: {axial index: uint8 [H, W] as displayed}.

    The brain fraction of a slice is measured on the full native slice, before `canvas`.
    """
    mask = foreground_mask(volume, foreground_threshold, high=float(percentiles[1]))
    if not mask.any():
        return {}
    pixels = normalize(volume, mask, percentiles)  # [X, Y, Z] uint8
    keep = select_slices(brain_fractions(mask), slice_range, min_brain_fraction, slice_step)
    return {int(k): fit_canvas(axial_slice(pixels, int(k)), canvas) for k in keep}
