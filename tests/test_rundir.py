"""braingan.rundir: where a run keeps what, and the finders of runs, checkpoints and sweeps, on real folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from braingan import rundir
from braingan.rundir import (
    GpuCheckDir,
    RunDir,
    gpu_check_dir,
    newest_last_checkpoint,
    newest_run,
    newest_sweep,
    snapshot_name,
    snapshot_tag,
    sweep_runs,
)
from braingan.utils.errors import MissingFileError


def touch(path: Path, age_s: float = 0.0) -> Path:
    """An empty file at `path`, its mtime `age_s` seconds in the past."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    stamp = path.stat().st_mtime - age_s
    os.utime(path, (stamp, stamp))
    return path


def hydra_run(folder: Path) -> Path:
    touch(folder / ".hydra" / "overrides.yaml")
    return folder


def test_the_layout_of_a_run_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.checkpoints == tmp_path / "run" / "checkpoints"
    assert (run.last, run.best_fid) == (run.checkpoints / "last.ckpt", run.checkpoints / "best_fid.ckpt")
    assert run.snapshot("000128") == run.checkpoints / "kimg_000128.ckpt" == run.checkpoints / snapshot_name("000128")
    assert snapshot_tag(run.snapshot("000000.128")) == "000000.128" and snapshot_tag(run.last) is None
    assert (run.hydra, run.config, run.hydra_config, run.overrides) == (
        run.path / ".hydra",
        run.path / ".hydra" / "config.yaml",
        run.path / ".hydra" / "hydra.yaml",
        run.path / ".hydra" / "overrides.yaml",
    )
    assert (run.tb, run.samples, run.manifest) == (run.path / "tb", run.path / "samples", run.path / "manifest.csv")
    assert (run.eval, run.metrics, run.generate) == (
        run.path / "eval",
        run.path / "eval" / "metrics.json",
        run.path / "generate",
    )
    assert not run.is_run() and run.existing_last() is None and not run.path.exists()  # nothing is created
    hydra_run(run.path)
    touch(run.last)
    assert run.is_run() and run.existing_last() == run.last
    for name in ("kimg_000002.ckpt", "kimg_000001.ckpt", "other.ckpt"):
        touch(run.checkpoints / name)
    assert [p.name for p in run.snapshots()] == ["kimg_000001.ckpt", "kimg_000002.ckpt"]
    assert RunDir.of_checkpoint(run.last).path == run.path.resolve()
    assert RunDir.of_checkpoint(tmp_path / "loose.ckpt").path == tmp_path.resolve()
    assert RunDir.in_run(run.last) and not RunDir.in_run(tmp_path / "loose.ckpt")
    assert RunDir("~/x").path == Path.home() / "x"
    assert (rundir.OUTPUTS, rundir.SWEEPS) == (Path("outputs"), Path("outputs") / "multirun")


def test_newest_last_checkpoint(tmp_path):
    with pytest.raises(
        MissingFileError, match=r"^ckpt=last: no .*/\*\*/checkpoints/last.ckpt under .*; pass ckpt=<file>$"
    ):
        newest_last_checkpoint(tmp_path)
    older = touch(RunDir(tmp_path / "a").last, age_s=60)
    newer = touch(RunDir(tmp_path / "b" / "c").last)
    touch(RunDir(tmp_path / "d").snapshot("000001"))  # a snapshot is not last.ckpt
    assert newest_last_checkpoint(tmp_path) == newer
    os.utime(older, None)
    os.utime(newer, (newer.stat().st_mtime - 120,) * 2)
    assert newest_last_checkpoint(tmp_path) == older
    with pytest.raises(MissingFileError, match="^resume=last: "):
        newest_last_checkpoint(tmp_path / "none", setting="resume")


def test_newest_run_is_the_training_run_with_the_newest_event_file(tmp_path):
    with pytest.raises(
        MissingFileError, match="^run=last: no training run with TensorBoard event files under .*; pass run="
    ):
        newest_run(tmp_path)
    hydra_run(tmp_path / "2026-01-03" / "00-00-00")  # a run without event files does not count
    with pytest.raises(MissingFileError):
        newest_run(tmp_path)
    first = tmp_path / "2026-01-01" / "12-00-00"
    touch(RunDir(first).tb / "events.out.tfevents.1.host", age_s=60)
    second = tmp_path / "multirun" / "2026-01-02" / "08-00-00" / "1"
    touch(RunDir(second).tb / "events.out.tfevents.2.host", age_s=30)
    touch(RunDir(second).tb / "hparams.yaml")  # not an event file
    assert newest_run(tmp_path) == second
    touch(RunDir(first).tb / "events.out.tfevents.3.host")  # a resumed run writes a new event file
    assert newest_run(tmp_path) == first
    # make guard's paired runs (outputs/guard/...) are newer but are not training runs.
    touch(RunDir(tmp_path / "guard" / "2026-01-04" / "00-00-00" / "plain").tb / "events.out.tfevents.4.host", age_s=-60)
    assert newest_run(tmp_path) == first
    # Nor is make gpu-check's short run (outputs/gpu_check/<stamp>/train).
    check = GpuCheckDir(gpu_check_dir("2026-01-05_00-00-00", tmp_path))
    touch(check.train.tb / "events.out.tfevents.5.host", age_s=-90)
    assert newest_run(tmp_path) == first


def test_the_layout_of_a_gpu_check_folder_and_the_sample_grids_in_time_order(tmp_path):
    check = GpuCheckDir(gpu_check_dir("2026-01-05_12-00-00", tmp_path))
    assert check.path == tmp_path / "gpu_check" / "2026-01-05_12-00-00"
    assert (check.json.name, check.markdown.name, check.tests_log.name) == (
        "gpu_check.json",
        "gpu_check.md",
        "gpu_tests.log",
    )
    assert check.bench("base-64_bf16-mixed") == check.path / "bench" / "base-64_bf16-mixed.json"
    assert check.train.path == check.path / "train" and check.train.plots == check.path / "train" / "plots"
    run = RunDir(tmp_path / "run")
    for name in ("fakes_000000.032.png", "fakes_000000.png", "fakes_000001.024.png", "reals.png"):
        touch(run.samples / name)
    # kimg tags with a fraction (utils.io.kimg_tag) do not sort by name: 000000.png is the first grid.
    assert [p.name for p in run.fakes()] == ["fakes_000000.png", "fakes_000000.032.png", "fakes_000001.024.png"]


def test_newest_sweep(tmp_path):
    with pytest.raises(MissingFileError, match=r"^no sweep folder under .*/<date>/<time>; pass the sweep folder"):
        newest_sweep(tmp_path)
    for stamp in ("2026-01-02/08-00-00", "2026-01-01/23-00-00", "2026-01-02/07-59-59"):
        (tmp_path / stamp).mkdir(parents=True)
    touch(tmp_path / "2026-01-03" / "stray.txt")  # a file is not a sweep
    assert newest_sweep(tmp_path) == tmp_path / "2026-01-02" / "08-00-00"  # by name: Hydra's stamps sort in time order


def test_sweep_runs_in_job_number_order(tmp_path):
    assert sweep_runs(tmp_path) == []
    for name in ("10", "2", "0", "1"):
        hydra_run(tmp_path / name)
    hydra_run(tmp_path / "group" / "3")  # deeper levels count too
    (tmp_path / "11" / "checkpoints").mkdir(parents=True)  # no .hydra/overrides.yaml: not a run
    touch(tmp_path / ".submitit" / "123_0" / "123_0_0_log.out")
    assert [p.relative_to(tmp_path).as_posix() for p in sweep_runs(tmp_path)] == ["0", "1", "2", "10", "group/3"]
