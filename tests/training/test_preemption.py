"""Preemption: a signal mid-run saves at the end of the step and stops; the rerun continues exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from braingan.checkpoint import load_checkpoint
from braingan.experiment.run import train
from braingan.training.preemption import Preemption, signal_number
from helpers.runs import REPO, compose, tiny_overrides

EXTRA = {"model.r1_interval": 4, "model.pl_interval": 2, "augment.kimg": 0.5, "augment.target": 0.0}
KIMG = 0.4


def _command(tmp_path: Path, demo_root: Path) -> list[str]:
    overrides = [o for o in tiny_overrides(tmp_path, demo_root, KIMG, **EXTRA) if not o.startswith("run_dir=")]
    return [sys.executable, "-m", "braingan.train", *overrides, f"hydra.run.dir={tmp_path / 'run'}"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PYTHONWARNINGS": "ignore"}


@pytest.mark.slow
def test_signal_saves_stops_and_the_rerun_continues_exactly(tmp_path, demo_root):
    straight = train(compose(tiny_overrides(tmp_path / "straight", demo_root, KIMG, **EXTRA)))

    cmd = _command(tmp_path / "preempted", demo_root)
    run = tmp_path / "preempted" / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(signal.SIGUSR2)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "saved and stopped (not a SLURM job" in out
    stopped_at = load_checkpoint(last)["braingan"]["cur_nimg"]
    assert 0 < stopped_at < KIMG * 1000

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{run} already holds a run: continuing from {last}" in again.stdout
    a, b = load_checkpoint(straight / "checkpoints" / "last.ckpt"), load_checkpoint(last)
    assert a["braingan"]["cur_nimg"] == b["braingan"]["cur_nimg"] == KIMG * 1000
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in sa["state"].items():
            assert torch.equal(st["exp_avg_sq"], sb["state"][pid]["exp_avg_sq"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_signal_saves_at_the_step_exits_128_plus_n_and_the_run_resumes(tmp_path, demo_root, sig):
    """kill / timeout / systemd (TERM) and Ctrl-C (INT): save at the end of the step, say where, exit non-zero."""
    cmd = _command(tmp_path, demo_root)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, text=True, env=_env())
        deadline = time.time() + 300
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be signalled"
        proc.send_signal(sig)
        proc.wait(timeout=300)
    stderr = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 128 + sig, stderr[-3000:]
    stopped_at = load_checkpoint(last)["braingan"]["cur_nimg"]
    assert 0 < stopped_at < KIMG * 1000
    assert stderr.strip().splitlines()[-1] == (
        f"train: stopped by {sig.name} at {stopped_at / 1000:.3f} kimg; saved {last}; continue with `make resume` "
        f"or resume={last}"
    )
    again = subprocess.run(
        [sys.executable, "-m", "braingan.train", f"resume={last}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert load_checkpoint(last)["braingan"]["cur_nimg"] == KIMG * 1000


def test_a_second_stop_signal_is_not_held_back():
    p = Preemption(checkpoint=None, signals=["USR2"], stop_signals=["TERM"])
    before = signal.getsignal(signal.SIGTERM)
    p.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == p._handler
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert p.received == p.stop_signal == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the next TERM terminates at once
    finally:
        p.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_after_the_last_step_names_the_final_save():
    """A signal that lands after the last step (during the final save, say): on_train_end's last.ckpt holds it."""
    p = Preemption(
        checkpoint=SimpleNamespace(dirpath=Path("/runs/a/checkpoints")), signals=["USR2"], stop_signals=["TERM"]
    )
    assert p.stop_message() == "stopped by a signal before anything was saved"
    p._handler(signal.SIGTERM, None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    p.on_train_end(None, SimpleNamespace(cur_kimg=0.4))
    assert p.stop_message() == (
        "stopped by SIGTERM at 0.400 kimg; saved /runs/a/checkpoints/last.ckpt; continue with "
        "`make resume` or resume=/runs/a/checkpoints/last.ckpt"
    )


def test_a_stop_signal_ignored_by_whoever_started_us_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a job started with & from a script
    try:
        p = Preemption(checkpoint=None, signals=["USR2"], stop_signals=["INT"])
        p.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        p.uninstall()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_handler_is_installed_and_restored():
    before = signal.getsignal(signal.SIGUSR2)
    p = Preemption(checkpoint=None, signals=["USR2"])
    p.install()
    assert signal.getsignal(signal.SIGUSR2) == p._handler
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.05)
    assert p.received == signal.SIGUSR2
    p.uninstall()
    assert signal.getsignal(signal.SIGUSR2) == before


def test_requeue_hands_over_to_the_earlier_handler():
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
    try:
        p = Preemption(checkpoint=None, signals=["SIGUSR2"])
        p.install()
        p.uninstall()
        assert p.requeue(is_global_zero=True) == "not signalled"
        p.received = signal.SIGUSR2
        assert p.requeue(is_global_zero=True) == "handed to the job's own handler"
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_signal_names():
    assert signal_number("USR2") == signal_number("SIGUSR2") == signal_number(12) == signal.SIGUSR2
