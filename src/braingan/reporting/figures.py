"""Figures of the entry points, drawn with matplotlib's object API (no pyplot, no global backend state).

`figure` lays out panels two to a row, `save_figure` writes a PNG atomically, and
`scatter_embedding` draws the style-space scatter of `make generate`, `projection_overlay` the
target, reconstruction and residual of `make project`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.io import atomic_path


def figure(panels: int, width: float = 6.0, height: float = 3.4):
    """(Figure, axes [rows * cols]) for `panels` panels of width x height inches, 1 or 2 columns; spare axes hidden."""
    from matplotlib.figure import Figure

    cols = 1 if panels == 1 else 2
    rows = -(-panels // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, dpi: int) -> None:
    """The figure as a PNG at `path` (written to a temporary file and renamed: never half a file)."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def scatter_embedding(
    points: np.ndarray,  # [N, 2] projected points
    codes: np.ndarray,  # [N] index into `names` of each point
    names: Sequence[str],  # class names (legend)
    path: str | os.PathLike,  # the PNG to write
    title: str,
    axis_labels: Sequence[str] = ("1", "2"),
    centers: np.ndarray | None = None,  # [len(names), 2] marked with a cross per class; None = none
    dpi: int = 100,
    real: tuple[np.ndarray, np.ndarray] | None = None,  # (points [M, 2], codes [M]) of projected real slices
) -> None:
    """A 2-D scatter coloured by class (generate's style-space embedding); real slices as triangles."""
    fig, (ax,) = figure(1, width=6.4, height=5.6)
    size = 8 if len(points) > 2000 else 14
    for k, name in enumerate(names):
        sel = codes == k
        ax.scatter(
            points[sel, 0],
            points[sel, 1],
            s=size,
            alpha=0.6,
            color=f"C{k}",
            label=f"{name} ({int(sel.sum())})",
            linewidths=0,
        )
        if centers is not None:
            ax.scatter(*centers[k], marker="X", s=160, color=f"C{k}", edgecolors="black", linewidths=1.2)
        if real is not None and (real[1] == k).any():
            mine = real[1] == k
            ax.scatter(
                real[0][mine, 0],
                real[0][mine, 1],
                s=40,
                marker="^",
                color=f"C{k}",
                edgecolors="black",
                linewidths=0.8,
                label=f"real {name} ({int(mine.sum())})",
            )
    ax.set_title(title + ("  (X = class w average)" if centers is not None else ""))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.legend(markerscale=2)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi)


def projection_overlay(
    target: np.ndarray,  # [H, W] or [H, W, 3] uint8: the real slice at native size
    recon: np.ndarray,  # the same shape: its reconstruction
    residual: np.ndarray,  # [H, W] uint8: |target - reconstruction|
    path: str | os.PathLike,  # the PNG to write
    title: str,
    dpi: int = 100,
) -> None:
    """Target | reconstruction | residual heat map side by side (make project's overlay figure)."""
    from matplotlib.figure import Figure

    height, width = residual.shape
    panel = 3.2 * min(1.0, width / height), 3.2 * min(1.0, height / width)
    fig = Figure(figsize=(3 * panel[0] + 0.9, panel[1] + 0.6), layout="constrained")
    axes = fig.subplots(1, 3)
    gray = dict(cmap="gray", vmin=0, vmax=255)
    for ax, image, name in ((axes[0], target, "target"), (axes[1], recon, "reconstruction")):
        ax.imshow(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image, **gray)
        ax.set_title(name, fontsize=9)
    shown = axes[2].imshow(residual, cmap="inferno", vmin=0, vmax=max(1, int(residual.max())))
    axes[2].set_title("|residual|", fontsize=9)
    fig.colorbar(shown, ax=axes[2], shrink=0.8, label="8-bit levels")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi)
