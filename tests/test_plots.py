"""`make plots` (python -m braingan.plots): the curves of a real tiny training run's TensorBoard
event files (plus a Metrics/ scalar written the way an evaluation callback would), one PNG per
group of tags, and the one-line errors."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from braingan import plots as plots_module
from braingan.experiment.run import train
from braingan.reporting.tensorboard import smooth
from helpers.runs import compose, one_line_exit, tiny_overrides

# What the files are named after, per tag prefix (the contract of `make plots`).
STEMS = {
    "Loss": "losses",
    "D": "d_outputs",
    "ADA": "ada",
    "Speed": "speed",
    "Metrics": "metrics",
    "Progress": "progress",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Path:
    """Two training steps with scalars logged after each, then an FID as a later callback logs it."""
    tmp = tmp_path_factory.mktemp("plots")
    run = train(compose(tiny_overrides(tmp, demo_root, 0.016, **{"schedule.log_kimg": 0.008})))
    with SummaryWriter(log_dir=str(run / "tb")) as writer:
        for nimg, fid in ((8, 300.0), (16, 250.0)):
            writer.add_scalar("Metrics/fid50k_full", fid, global_step=nimg)
    return run


def logged_tags(run: Path) -> list[str]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return acc.Tags()["scalars"]


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Hydra entry point, in this process, as `python -m braingan.plots` runs it."""
    monkeypatch.setattr(sys, "argv", ["braingan.plots", *args])
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        plots_module.main()
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level


def main_error(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    return one_line_exit(lambda: run_main(args, monkeypatch), "plots")


@pytest.mark.slow
def test_one_png_per_group_of_logged_tags(run: Path, monkeypatch) -> None:
    tags = logged_tags(run)
    assert {
        "Loss/G",
        "Loss/D",
        "Loss/r1_penalty",
        "Loss/path_length",
        "D/real",
        "D/fake",
        "ADA/p",
        "Metrics/fid50k_full",
    } <= set(tags)
    run_main([f"run={run}"], monkeypatch)
    expected = {STEMS[t.split("/")[0]] + ".png" for t in tags if t != "Progress/kimg"}
    assert {p.name for p in (run / "plots").iterdir()} == expected
    # One panel per loss (2 columns), D(real) and D(fake) together on one axis.
    losses = sum(t.startswith("Loss/") for t in tags)
    one_row = Image.open(run / "plots" / "d_outputs.png").size[1]
    assert Image.open(run / "plots" / "losses.png").size[1] == pytest.approx(-(-losses // 2) * one_row, abs=2)
    assert Image.open(run / "plots" / "metrics.png").size[1] == pytest.approx(one_row, abs=2)


@pytest.mark.slow
def test_smoothing_changes_the_curves_and_is_checked(run: Path, tmp_path: Path, monkeypatch) -> None:
    run_main([f"run={run}", f"out={tmp_path / 'raw'}", "smoothing=0"], monkeypatch)
    run_main([f"run={run}", f"out={tmp_path / 'smooth'}", "smoothing=0.9"], monkeypatch)
    raw, smooth = (np.asarray(Image.open(tmp_path / d / "losses.png")) for d in ("raw", "smooth"))
    assert raw.shape == smooth.shape and not np.array_equal(raw, smooth)
    assert "smoothing=1.5 must be in [0, 1)" in main_error([f"run={run}", "smoothing=1.5"], monkeypatch)


def test_smooth_is_tensorboards_debiased_ema() -> None:
    # last = 0.5 last + 0.5 v, divided by 1 - 0.5^k: 1, (0.25 + 1) / 0.75, (0.625 + 1.5) / 0.875
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 5 / 3, 17 / 7])
    np.testing.assert_allclose(smooth(np.array([4.0, np.nan, 2.0]), 0.0), [4.0, np.nan, 2.0])


@pytest.mark.slow
def test_newest_run_by_default_and_errors(run: Path, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main_error([f"run={empty}"], monkeypatch) == (
        f"plots: no TensorBoard event files in {empty / 'tb'}; run= must be a training run folder (outputs/<date>/<time>)"
    )
    assert main_error([f"run={tmp_path / 'none'}"], monkeypatch).startswith(
        f"plots: run={tmp_path / 'none'} is not a folder"
    )
    assert "smoothingg: no such setting; did you mean smoothing?" in main_error(["smoothingg=0.5"], monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert "plots: run=last: no training run with TensorBoard event files" in main_error([], monkeypatch)
    copy = tmp_path / "outputs" / "2026-01-01" / "12-00-00"
    shutil.copytree(run / "tb", copy / "tb")
    # A newer make guard run is not a training run: run=last skips it.
    guard = tmp_path / "outputs" / "guard" / "2026-01-02" / "12-00-00" / "plain"
    shutil.copytree(run / "tb", guard / "tb")
    for event in (guard / "tb").iterdir():
        os.utime(event, (event.stat().st_atime, event.stat().st_mtime + 60))
    run_main([], monkeypatch)
    assert (copy / "plots" / "losses.png").is_file()
    assert not (guard / "plots").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "outputs"]  # no .hydra/, no plots.log
