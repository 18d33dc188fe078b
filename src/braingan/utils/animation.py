"""Latent paths (linear / spherical interpolation) and writing frames as GIF (Pillow) or MP4.

GIF needs nothing beyond Pillow. MP4 is written through OpenCV when it is importable
(`mp4_writer_available`); there is no other writer, and nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import UsageError
from .io import atomic_path

INTERPOLATIONS = ("linear", "slerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a + t (b - a); a, b [..., D], t [T] -> [T, ..., D]."""
    t = t.reshape(-1, *([1] * a.ndim)).to(a.dtype)
    return a + t * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the great circle from a to b, the norm interpolated linearly.

    a, b [..., D], t [T] -> [T, ..., D]. The angle is measured between the directions of a and b
    over the last axis; nearly parallel vectors fall back to `lerp`.
    """
    t = t.reshape(-1, *([1] * a.ndim)).to(a.dtype)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # [..., 1]
    ua, ub = a / na.clamp(min=eps), b / nb.clamp(min=eps)
    omega = torch.acos((ua * ub).sum(dim=-1, keepdim=True).clamp(-1 + eps, 1 - eps))  # [..., 1]
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    out = direction * (na + t * (nb - na))
    parallel = (so.abs() < 1e-4).expand_as(out)
    return torch.where(parallel, lerp(a, b, t.flatten()), out)


def interpolation_path(
    keys: torch.Tensor,  # [K, ...] keyframes (latents), K >= 2
    steps: int,  # frames per segment, the segment's start included, its end not
    method: str = "linear",  # linear | slerp
    loop: bool = True,  # True: the last keyframe runs back to the first (K segments)
) -> torch.Tensor:  # [segments, steps + 1, ...]: each segment with both its ends
    """Frames between consecutive keyframes; an animation plays [:, :-1] of every segment."""
    if method not in INTERPOLATIONS:
        raise UsageError(f"interpolation method={method!r} is not one of: {' | '.join(INTERPOLATIONS)}")
    if keys.shape[0] < 2 or steps < 1:
        raise UsageError(f"an interpolation needs 2 or more keyframes and steps >= 1, got {keys.shape[0]} and {steps}")
    ends = torch.cat([keys[1:], keys[:1]]) if loop else keys[1:]
    t = torch.linspace(0, 1, steps + 1, dtype=keys.dtype, device=keys.device)
    blend = slerp if method == "slerp" else lerp
    return torch.stack([blend(a, b, t) for a, b in zip(keys[: len(ends)], ends)])


def _frames_as_images(frames: np.ndarray) -> list[Image.Image]:
    """uint8 [T, H, W, C] (C = 1 or 3) -> PIL images."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be uint8 [T, H, W, 1 or 3], got {frames.dtype} {frames.shape}")
    if frames.shape[-1] == 1:
        return [Image.fromarray(f[:, :, 0], mode="L") for f in frames]
    return [Image.fromarray(f, mode="RGB") for f in frames]


def save_gif(
    frames: np.ndarray,  # uint8 [T, H, W, C], C = 1 (grayscale) or 3
    path: str | os.PathLike,
    fps: float = 12.0,  # frames per second
    loop: bool = True,  # True: play forever; False: once
) -> None:
    """Animated GIF, atomically. Pillow merges identical consecutive frames (adding their time)."""
    images = _frames_as_images(frames)
    duration = max(round(1000.0 / fps), 20)  # ms; browsers slow anything under 20 ms down
    with atomic_path(path) as tmp:
        extra = {"loop": 0} if loop else {}
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, optimize=False, **extra
        )


def mp4_writer_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def save_mp4(
    frames: np.ndarray,  # uint8 [T, H, W, C], C = 1 or 3
    path: str | os.PathLike,
    fps: float = 12.0,  # frames per second
) -> None:
    """MP4 (MPEG-4 part 2, 'mp4v') through OpenCV; raises RuntimeError when no writer is installed."""
    if not mp4_writer_available():
        raise RuntimeError("no MP4 writer is installed (needs opencv-python); write the GIF only (interp.mp4=false)")
    import cv2

    _frames_as_images(frames)  # validates the layout
    height, width = frames.shape[1:3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")  # OpenCV picks the container by suffix
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (width, height), isColor=True)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open an MP4 writer for {path}")
        try:
            for frame in frames:
                bgr = np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame[:, :, ::-1]
                writer.write(np.ascontiguousarray(bgr))
        finally:
            writer.release()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
