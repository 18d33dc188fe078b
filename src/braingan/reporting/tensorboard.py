"""Reading the scalars a run logged to TensorBoard (<run>/tb/events.out.tfevents.*), and TensorBoard's smoothing.

`read_scalars` reads every event file of a folder together (a resumed run appends new files); a
step logged twice (a resume from an older checkpoint) keeps its latest value. `smooth` is the
debiased exponential moving average that TensorBoard draws. Used by `make plots`, `make guard`
and `make sweep-report`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..rundir import EVENTS, RunDir
from ..utils.errors import MissingFileError, UsageError

__all__ = ["EVENTS", "event_dir", "read_scalars", "smooth"]


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: debiased EMA with `weight` in [0, 1); non-finite values pass through."""
    if not 0 <= weight < 1:
        raise UsageError(f"smoothing={weight} must be in [0, 1)")
    out, last, count = np.empty_like(values, dtype=np.float64), 0.0, 0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = v
            continue
        last, count = last * weight + (1 - weight) * v, count + 1
        out[i] = last / (1 - weight**count)
    return out


def event_dir(run: str | Path) -> Path:
    """The folder of the run's event files: <run>/tb, or `run` itself when it is that folder."""
    rd = RunDir(Path(run))
    for folder in (rd.tb, rd.path):
        if folder.is_dir() and any(folder.glob(EVENTS)):
            return folder
    raise MissingFileError(
        f"no TensorBoard event files in {rd.tb}; run= must be a training run folder (outputs/<date>/<time>)"
    )


def read_scalars(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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
