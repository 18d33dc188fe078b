"""Training curves as PNGs: the scalars a run logged, one figure per group of tags (`make plots`, `make gpu-check`).

    losses.png      Loss/G, Loss/D, Loss/r1_penalty, Loss/path_length, ... one panel each
    d_outputs.png   D/real and D/fake on one axis
    ada.png         ADA/p, ADA/rt                  speed.png     Speed/*
    metrics.png     Metrics/* (e.g. FID), one panel each
    <group>.png     any other prefix (progress.png: Progress/nonfinite_steps, ...)

The x axis is training time in kimg (the logger's step counts images shown). Each panel shows
the raw values faintly and TensorBoard's debiased exponential moving average (`smoothing`) on top.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .figures import figure, save_figure
from .tensorboard import smooth

# file name, tag prefix, all tags on one axis (True) or one panel per tag (False)
GROUPS = (
    ("losses", "Loss/", False),
    ("d_outputs", "D/", True),
    ("ada", "ADA/", False),
    ("speed", "Speed/", False),
    ("metrics", "Metrics/", False),
)
SKIPPED = ("Progress/kimg",)  # the x axis itself
FIRST = ("Loss/G", "Loss/D", "Loss/r1_penalty", "Loss/path_length", "D/real", "D/fake", "ADA/p")  # panel order


def group_tags(tags: Sequence[str]) -> list[tuple[str, list[str], bool]]:
    """[(file stem, tags, overlay)] for the known groups first, then one group per other prefix."""
    tags = [t for t in tags if t not in SKIPPED]
    groups, taken = [], set()
    for stem, prefix, overlay in GROUPS:
        members = sorted(
            (t for t in tags if t.startswith(prefix)), key=lambda t: (FIRST.index(t) if t in FIRST else len(FIRST), t)
        )
        if members:
            groups.append((stem, members, overlay))
            taken.update(members)
    others: dict[str, list[str]] = {}
    for tag in sorted(t for t in tags if t not in taken):
        prefix = tag.split("/", 1)[0] if "/" in tag else "other"
        others.setdefault(re.sub(r"[^a-z0-9_-]", "_", prefix.lower()), []).append(tag)
    return groups + [(stem, members, False) for stem, members in others.items()]


def plot_group(
    scalars: dict[str, tuple[np.ndarray, np.ndarray]],  # tag -> (steps in images, values)
    tags: list[str],  # the tags of this figure
    overlay: bool,  # all on one axis (True) or one panel each
    path: Path,  # the PNG to write
    smoothing: float = 0.6,  # EMA weight in [0, 1); 0 = raw values only
    dpi: int = 100,
) -> None:
    fig, axes = figure(1 if overlay else len(tags))
    for i, tag in enumerate(tags):
        ax = axes[0 if overlay else i]
        steps, values = scalars[tag]
        kimg = steps / 1000.0
        color = f"C{i if overlay else 0}"
        marker = "o" if len(steps) < 3 else None
        if smoothing > 0 and len(steps) > 1:
            ax.plot(kimg, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(kimg, smooth(values, smoothing), color=color, linewidth=1.6, label=tag, marker=marker)
        else:
            ax.plot(kimg, values, color=color, linewidth=1.6, label=tag, marker=marker)
        ax.set_xlabel("training time (kimg)")
        ax.grid(alpha=0.3)
        if not overlay:
            ax.set_title(tag)
    if overlay:
        axes[0].set_title(", ".join(tags))
        axes[0].legend()
    save_figure(fig, path, dpi)


def plot_scalars(
    scalars: dict[str, tuple[np.ndarray, np.ndarray]],  # tag -> (steps in images, values), as read_scalars gives
    out: Path,  # the folder of the PNGs
    smoothing: float = 0.6,  # EMA weight in [0, 1); 0 = raw values only
    dpi: int = 100,  # PNG resolution
) -> list[Path]:
    """One PNG per group of tags (`group_tags`) in `out`; the files written."""
    written = []
    for stem, tags, overlay in group_tags(list(scalars)):
        plot_group(scalars, tags, overlay, out / f"{stem}.png", smoothing, dpi)
        written.append(out / f"{stem}.png")
    return written
