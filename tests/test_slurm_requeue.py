"""Preemption on a real SLURM cluster: a job signalled mid-run saves, is requeued by submitit, and
the requeued job continues from its checkpoint in the same run folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from helpers.runs import REPO, tiny_overrides

KIMG = 1.2


def _progress_steps(event_file) -> list[int]:
    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars("Progress/kimg")]


@pytest.mark.slow
def test_signalled_job_is_requeued_and_continues_from_its_checkpoint(tmp_path, demo_root, slurm_cluster):
    sweep = tmp_path / "sweep"
    extra = {
        "schedule.log_kimg": 0.05,
        "schedule.image_kimg": 0.4,
        "schedule.last_kimg": 0.1,
        "schedule.snapshot_kimg": 0.4,
        "hydra.sweep.dir": sweep,
        "hydra.launcher.partition": slurm_cluster.partition,
        "hydra.launcher.cpus_per_task": 1,
        "hydra.launcher.mem_gb": 2,
        "hydra.launcher.timeout_min": 30,  # the signal comes long before the limit: a preemption
    }
    overrides = [o for o in tiny_overrides(tmp_path, demo_root, KIMG, **extra) if not o.startswith("run_dir=")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep_proc = subprocess.Popen(
        ["make", "-s", "sweep", f"ARGS={' '.join(overrides)}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = sweep / "0"
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 600
        while not last.exists():
            assert sweep_proc.poll() is None, sweep_proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "the job wrote no checkpoint"
            time.sleep(0.2)
        [job] = slurm_cluster.submitit_job_ids(sweep)  # one point: a plain job, not an array
        slurm_cluster.signal_job(job, "USR2")  # what SLURM sends signal_delay_s before the limit

        # submitit requeues the job; SLURM starts it again once the old credential has expired
        # (scripts/slurm-local.sh: 30 s; forcing an earlier start gets it killed, "credential revoked").
        requeued = False
        while not requeued:
            state = slurm_cluster.queued_jobs([job]).get(job)
            requeued = state == "PENDING"
            assert state is not None or requeued, "the job left the queue without a requeue"
            assert time.monotonic() < deadline, f"the job was not requeued (state {state})"
            time.sleep(0.2)
        out, _ = sweep_proc.communicate(timeout=900)
    finally:
        if sweep_proc.poll() is None:
            os.killpg(sweep_proc.pid, signal.SIGKILL)  # make and the submitting python under it
            for j in slurm_cluster.submitit_job_ids(sweep):
                subprocess.run(["scancel", j], timeout=30)
    assert sweep_proc.returncode == 0, out[-4000:]

    # One run folder, finished at the full length.
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0"]
    assert load_checkpoint(last)["braingan"]["cur_nimg"] == KIMG * 1000
    logs = "".join(p.read_text(errors="replace") for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs, logs[-3000:]
    # Our handler saved at a step boundary (not only the periodic checkpoint) before the requeue.
    saved = re.search(r"saved \S+last\.ckpt at ([0-9.]+) kimg; stopping for the requeue", logs)
    assert saved, logs[-3000:]
    assert f"{run} already holds a run: continuing from {last}" in logs, logs[-3000:]
    # Two TensorBoard event files in the same tb/: the second starts where the first stopped.
    events = sorted((run / "tb").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    assert len(events) == 2
    first, second = _progress_steps(events[0]), _progress_steps(events[1])
    assert 0 < min(second) and max(first) < KIMG * 1000
    assert max(first) == round(float(saved.group(1)) * 1000)  # the first attempt ended at the save
    assert min(second) > max(first)  # the second continued from it, not from zero
    assert max(second) == KIMG * 1000
