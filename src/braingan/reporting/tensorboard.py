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

__all__ = ["EVAL_TAGS", "EVENTS", "event_dir", "read_scalars", "smooth", "write_eval_scalars"]

# make eval's numbers in the run's event files, at step = the checkpoint's images shown, so that
# TensorBoard's HPARAMS tab sorts a sweep's runs by them: metrics.json key -> tag.
EVAL_SCALARS = {
    "fid": "Eval/fid",
    "kid_x1e3": "Eval/kid_x1e3",
    "precision": "Eval/precision",
    "recall": "Eval/recall",
    "density": "Eval/density",
    "coverage": "Eval/coverage",
}
EVAL_TAGS = tuple(EVAL_SCALARS.values())


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


def write_eval_scalars(
    folder: str | Path,  # the run's tb/ folder
    step: int,  # the evaluated checkpoint's images shown (cur_nimg)
    metrics: dict,  # metrics.json's "metrics": key -> value
    params: dict | None = None,  # the run's flattened settings: rewrite the HPARAMS summaries with `metric_tags`
    metric_tags: tuple[str, ...] = (),
) -> list[str]:
    """make eval's metrics as scalars (EVAL_SCALARS) in a new event file of the run; the tags written.

    Runs started before these tags were HPARAMS columns get the summaries again with them
    (`params`, `metric_tags`), so their HPARAMS tab shows make eval's numbers too.
    """
    from torch.utils.tensorboard import SummaryWriter

    from ..training.callbacks import write_hparams

    written = []
    with SummaryWriter(log_dir=str(folder)) as writer:
        for key, tag in EVAL_SCALARS.items():
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(tag, float(value), global_step=int(step))
                written.append(tag)
        if params:
            write_hparams(writer, params, metric_tags)
    return written
