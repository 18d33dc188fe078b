"""Entry point: `python -m braingan.plots [run=<run folder>]` (what `make plots` runs): training curves as PNGs.

Reads the scalars that training logged to TensorBoard (<run>/tb/events.out.tfevents.*, all files
of a resumed run together) and writes one PNG per group of tags into <run>/plots/ (or out=):
losses.png, d_outputs.png, ada.png, speed.png, metrics.png, ... (reporting/curves.py says what
each holds and how the curves are drawn). A step logged twice (a resume from an older checkpoint)
keeps its latest value. Reading the event files and smoothing live in `reporting/tensorboard.py`,
the grouping and the figures in `reporting/curves.py`, and run=last is `rundir.newest_run`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .reporting.curves import group_tags, plot_scalars
from .reporting.tensorboard import event_dir, read_scalars, smooth
from .rundir import RunDir, newest_run
from .utils.errors import MissingFileError, UsageError

log = logging.getLogger(__name__)


def plots(
    run: str | Path | None = None,  # training run folder (holds tb/); None = newest under outputs/
    out: str | Path | None = None,  # output folder; None = <run>/plots
    smoothing: float = 0.6,  # TensorBoard-style EMA weight in [0, 1); 0 = off
    dpi: int = 100,  # PNG resolution
) -> list[Path]:
    """Write one PNG per group of logged scalars; returns the files written."""
    run = newest_run() if run in (None, "", "last") else Path(str(run)).expanduser()
    if not run.is_dir():
        raise MissingFileError(f"run={run} is not a folder; pass a training run folder (outputs/<date>/<time>)")
    smooth(np.zeros(1), smoothing)  # validates the weight before any work
    scalars = read_scalars(event_dir(run))
    if not group_tags(list(scalars)):
        raise UsageError(f"the event files of {run} hold no scalars yet; plot again once training has logged")
    out = Path(out).expanduser() if out not in (None, "") else RunDir(run).plots
    written = plot_scalars(scalars, out, smoothing, dpi)
    log.info(
        "wrote %d plots of %d scalar tags to %s: %s",
        len(written),
        len(scalars),
        out,
        ", ".join(p.name for p in written),
    )
    return written


@hydra.main(config_path=str(CONF_DIR), config_name="plots", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("plots"):
        plots(run=cfg.run, out=cfg.out, smoothing=float(cfg.smoothing), dpi=int(cfg.dpi))


def main() -> None:
    cli.hydra_entry("plots", "plots", _hydra_main)


if __name__ == "__main__":
    main()
