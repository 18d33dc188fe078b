"""Entry point: `python -m braingan.plots [run=<run folder>]` (what `make plots` runs), and figures.

Reads the scalars that training logged to TensorBoard (<run>/tb/events.out.tfevents.*, all files
of a resumed run together) and writes one PNG per group of tags into <run>/plots/ (or out=):

    losses.png      Loss/G, Loss/D, Loss/r1_penalty, Loss/path_length, ... one panel each
    d_outputs.png   D/real and D/fake on one axis
    ada.png         ADA/p, ADA/rt                  speed.png     Speed/*
    metrics.png     Metrics/* (e.g. FID), one panel each
    <group>.png     any other prefix (progress.png: Progress/nonfinite_steps, ...)

The x axis is training time in kimg (the logger's step counts images shown). Each panel shows
the raw values faintly and TensorBoard's debiased exponential moving average (`smoothing`) on
top. A step logged twice (a resume from an older checkpoint) keeps its latest value.
`scatter_embedding` draws the style-space scatter of `braingan.generate`. Figures are drawn
with matplotlib's object API (no pyplot, no global backend state).
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from . import cli
from .conf_utils import CONF_DIR
from .utils.errors import UsageError
from .utils.io import atomic_path

log = logging.getLogger(__name__)

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
EVENTS = "events.out.tfevents.*"


class PlotsError(UsageError):
    """A usage problem, reported in one line."""


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: debiased EMA with `weight` in [0, 1); non-finite values pass through."""
    if not 0 <= weight < 1:
        raise PlotsError(f"smoothing={weight} must be in [0, 1)")
    out, last, count = np.empty_like(values, dtype=np.float64), 0.0, 0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = v
            continue
        last, count = last * weight + (1 - weight) * v, count + 1
        out[i] = last / (1 - weight**count)
    return out


def event_dir(run: Path) -> Path:
    """The folder of the run's event files: <run>/tb, or `run` itself when it is that folder."""
    for folder in (run / "tb", run):
        if folder.is_dir() and any(folder.glob(EVENTS)):
            return folder
    raise PlotsError(f"no TensorBoard event files in {run / 'tb'}; run= must be a training run folder (outputs/<date>/<time>)")


def read_scalars(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps [T], values [T]) sorted by step, from every event file in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})  # 0 = keep every point
    quiet = logging.getLogger("tensorboard")  # it logs every file switch at INFO
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        acc.Reload()
    finally:
        quiet.setLevel(level)
    scalars = {}
    for tag in acc.Tags()["scalars"]:
        latest: dict[int, tuple[float, float]] = {}  # step -> (wall_time, value)
        for e in acc.Scalars(tag):
            if e.step not in latest or e.wall_time >= latest[e.step][0]:
                latest[e.step] = (e.wall_time, e.value)
        steps = np.array(sorted(latest))
        scalars[tag] = (steps, np.array([latest[s][1] for s in steps], dtype=np.float64))
    return scalars


def group_tags(tags: Sequence[str]) -> list[tuple[str, list[str], bool]]:
    """[(file stem, tags, overlay)] for the known groups first, then one group per other prefix."""
    tags = [t for t in tags if t not in SKIPPED]
    groups, taken = [], set()
    for stem, prefix, overlay in GROUPS:
        members = sorted((t for t in tags if t.startswith(prefix)), key=lambda t: (FIRST.index(t) if t in FIRST else len(FIRST), t))
        if members:
            groups.append((stem, members, overlay))
            taken.update(members)
    others: dict[str, list[str]] = {}
    for tag in sorted(t for t in tags if t not in taken):
        prefix = tag.split("/", 1)[0] if "/" in tag else "other"
        others.setdefault(re.sub(r"[^a-z0-9_-]", "_", prefix.lower()), []).append(tag)
    return groups + [(stem, members, False) for stem, members in others.items()]


def _figure(panels: int, width: float = 6.0, height: float = 3.4):
    from matplotlib.figure import Figure

    cols = 1 if panels == 1 else 2
    rows = -(-panels // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig, path: Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def plot_group(
    scalars: dict[str, tuple[np.ndarray, np.ndarray]],  # tag -> (steps in images, values)
    tags: list[str],                  # the tags of this figure
    overlay: bool,                    # all on one axis (True) or one panel each
    path: Path,                       # the PNG to write
    smoothing: float = 0.6,           # EMA weight in [0, 1); 0 = raw values only
    dpi: int = 100,
) -> None:
    fig, axes = _figure(1 if overlay else len(tags))
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
    _save(fig, path, dpi)


def scatter_embedding(
    points: np.ndarray,               # [N, 2] projected points
    codes: np.ndarray,                # [N] index into `names` of each point
    names: Sequence[str],             # class names (legend)
    path: str | os.PathLike,          # the PNG to write
    title: str,
    axis_labels: Sequence[str] = ("1", "2"),
    centers: np.ndarray | None = None,  # [len(names), 2] marked with a cross per class; None = none
    dpi: int = 100,
) -> None:
    """A 2-D scatter coloured by class (generate's style-space embedding)."""
    fig, (ax,) = _figure(1, width=6.4, height=5.6)
    size = 8 if len(points) > 2000 else 14
    for k, name in enumerate(names):
        sel = codes == k
        ax.scatter(points[sel, 0], points[sel, 1], s=size, alpha=0.6, color=f"C{k}", label=f"{name} ({int(sel.sum())})", linewidths=0)
        if centers is not None:
            ax.scatter(*centers[k], marker="X", s=160, color=f"C{k}", edgecolors="black", linewidths=1.2)
    ax.set_title(title + ("  (X = class w average)" if centers is not None else ""))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.legend(markerscale=2)
    ax.grid(alpha=0.3)
    _save(fig, Path(path), dpi)


def newest_run(root: str | Path = "outputs") -> Path:
    # Training runs only: make guard's paired runs live under <root>/guard.
    guard = (Path(root) / "guard").resolve()
    found = sorted((p for p in Path(root).glob(f"**/tb/{EVENTS}") if not p.resolve().is_relative_to(guard)),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise PlotsError(f"run=last: no training run with TensorBoard event files under {Path(root).resolve()}; pass run=<folder>")
    return found[-1].parent.parent


def plots(
    run: str | Path | None = None,    # training run folder (holds tb/); None = newest under outputs/
    out: str | Path | None = None,    # output folder; None = <run>/plots
    smoothing: float = 0.6,           # TensorBoard-style EMA weight in [0, 1); 0 = off
    dpi: int = 100,                   # PNG resolution
) -> list[Path]:
    """Write one PNG per group of logged scalars; returns the files written."""
    run = newest_run() if run in (None, "", "last") else Path(str(run)).expanduser()
    if not run.is_dir():
        raise PlotsError(f"run={run} is not a folder")
    smooth(np.zeros(1), smoothing)  # validates the weight before any work
    scalars = read_scalars(event_dir(run))
    groups = group_tags(list(scalars))
    if not groups:
        raise PlotsError(f"the event files of {run} hold no scalars yet")
    out = Path(out).expanduser() if out not in (None, "") else run / "plots"
    written = []
    for stem, tags, overlay in groups:
        plot_group(scalars, tags, overlay, out / f"{stem}.png", smoothing, dpi)
        written.append(out / f"{stem}.png")
    log.info("wrote %d plots of %d scalar tags to %s: %s", len(written), len(scalars), out, ", ".join(p.name for p in written))
    return written


@hydra.main(config_path=str(CONF_DIR), config_name="plots", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("plots"):
        plots(run=cfg.run, out=cfg.out, smoothing=float(cfg.smoothing), dpi=int(cfg.dpi))


def main() -> None:
    cli.hydra_entry("plots", "plots", _hydra_main)


if __name__ == "__main__":
    main()
