"""Faults while training, through the real entry point: a full disk, a read-only cache folder, the
leftovers of a killed checkpoint write. Each leaves the previous checkpoint intact and the run resumable."""

from __future__ import annotations

import shutil

import pytest

from braingan.checkpoint import load_checkpoint
from helpers.runs import run_tool, tiny_overrides, tmpfs, without


@pytest.mark.slow
def test_a_full_disk_stops_in_one_line_and_the_previous_checkpoint_resumes(tmp_path, demo_root):
    """4 MB of disk: the first last.ckpt (2.4 MB) fits, the temporary file of the second does not."""
    disk = tmp_path / "disk"
    run = disk / "run"
    last = run / "checkpoints" / "last.ckpt"
    cadences = {"schedule.last_kimg": 0.016, "schedule.snapshot_kimg": 100, "schedule.image_kimg": 100}
    overrides = without(tiny_overrides(tmp_path, demo_root, 0.4, **cadences), "run_dir")
    with tmpfs(disk, "4m") as mount:
        proc = run_tool("train", [*overrides, f"hydra.run.dir={run}"])
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert line == (
            f"train: no space left on {last.parent} (No space left on device); the previous last.ckpt "
            f"(0.016 kimg) is intact: free space, then continue with resume={last}"
        ), proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # the temporary file is gone
        assert load_checkpoint(last)["braingan"]["cur_nimg"] == 16

        mount.remount(size="64m")  # space freed
        again = run_tool("train", [f"resume={last}"])
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
        assert load_checkpoint(last)["braingan"]["cur_nimg"] == 400


@pytest.mark.slow
def test_a_read_only_cache_dir_decodes_in_memory_with_one_warning(tmp_path, demo_root):
    cache = tmp_path / "shared"
    run = tmp_path / "run"
    overrides = without(
        tiny_overrides(tmp_path, demo_root, 0.016, **{"dataset.cache_dir": cache / "slices"}), "run_dir"
    )
    with tmpfs(cache, "1m", read_only=True):
        proc = run_tool("train", [*overrides, f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    warned = [line for line in proc.stderr.splitlines() if "dataset.cache_dir=" in line]
    assert len(warned) == 1 and "cannot be written (Read-only file system)" in warned[0], proc.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["braingan"]["cur_nimg"] == 16


@pytest.mark.slow
def test_temporary_files_of_a_killed_checkpoint_write_are_removed_at_the_next_start(tmp_path, demo_root):
    run = tmp_path / "run"
    overrides = without(tiny_overrides(tmp_path, demo_root, 0.032), "run_dir") + [f"hydra.run.dir={run}"]
    first = run_tool("train", overrides)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = run / "checkpoints"
    stale = [checkpoints / ".last.ckpt.k1lled01.tmp", checkpoints / ".kimg_000000.064.ckpt.x_9a7b2c.tmp"]
    for path in stale:
        path.write_bytes(b"PK\x03\x04 half a checkpoint")
    keep = checkpoints / "notes.tmp"  # not of the pattern: someone else's file
    keep.write_text("mine")
    shutil.copyfile(checkpoints / "last.ckpt", checkpoints / "backup.ckpt")

    again = run_tool("train", [*overrides, "kimg=0.064"])  # the same run, continued
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert not any(p.exists() for p in stale)
    assert keep.read_text() == "mine" and (checkpoints / "backup.ckpt").is_file()
    assert "removed 2 temporary file(s) of an interrupted checkpoint write" in (run / "train.log").read_text()
    assert load_checkpoint(checkpoints / "last.ckpt")["braingan"]["cur_nimg"] == 64
