"""Two-process data-parallel training on CPU (gloo) through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from braingan.experiment.command import default_preset, slurm_run_dir
from braingan.experiment.resume import config_differences, continue_checkpoint
from braingan.experiment.trainer import build_strategy, requested_processes
from braingan.rundir import RunDir
from braingan.training.distributed import GANDDPStrategy, tensor_digest
from helpers.runs import REPO, tiny_overrides

# R1 and path length every second step, ADA moving p a visible amount on every step.
DDP = {
    "trainer.devices": 2,
    "model.r1_interval": 2,
    "model.pl_interval": 2,
    "augment.kimg": 0.5,
    "augment.target": 0.0,
    "augment.interval": 1,
}


def _run(tmp_path: Path, demo_root: Path, kimg: float, **extra) -> Path:
    run = tmp_path / "run"
    overrides = [
        o for o in tiny_overrides(tmp_path, demo_root, kimg, **{**DDP, **extra}) if not o.startswith("run_dir=")
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "braingan.train", *overrides, f"hydra.run.dir={run}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, demo_root) -> Path:
    # With the FID monitor on: rank 0 measures, every rank joins the best-FID save.
    return _run(
        tmp_path_factory.mktemp("full"), demo_root, 0.128, **{"schedule.fid_kimg": 0.064, "schedule.fid_num_gen": 32}
    )


@pytest.mark.slow
def test_two_processes_stay_identical_and_write_one_set_of_outputs(full_run):
    run = full_run
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    state, info = ckpt["state_dict"], ckpt["braingan"]
    assert info["cur_nimg"] == 128 and info["batch_idx"] == 16  # global batch 8 = 2 x 4

    # Every weight and buffer (G, D, G_ema, ADA p, path-length mean, ADA statistic) agreed on
    # both ranks at the last checkpoint, and the digests are of exactly what was saved.
    per_rank = info["rank_digests"]
    assert len(per_rank) == 2 and per_rank[0] == per_rank[1]
    saved = {k: tensor_digest(v) for k, v in state.items()}
    for name, digest in per_rank[0].items():
        kind, _, key = name.partition(":")
        if key in saved:
            assert saved[key] == digest, key
    for key in ("G.synthesis", "D.", "G_ema.", "augment_pipe.p", "pl_mean", "ada_stat", "G.mapping.w_avg"):
        assert any(
            f"{kind}:{k}".startswith(f"{kind}:{key}")
            for k in saved
            for kind in ("param", "buffer")
            if f"{kind}:{k}" in per_rank[0]
        ), key
    assert 0 < float(state["augment_pipe.p"]) < 1  # p moved, identically on both ranks
    assert float(state["pl_mean"]) > 0  # path-length steps ran
    assert len(info["rng_per_rank"]) == 2
    assert not torch.equal(info["rng_per_rank"][0]["torch"], info["rng_per_rank"][1]["torch"])  # own latents per rank

    # One set of outputs: one event file, one log, the expected checkpoints and grids.
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best_fid.ckpt",
        "kimg_000000.064.ckpt",
        "kimg_000000.128.ckpt",
        "last.ckpt",
    ]
    assert len(list((run / "samples").glob("fakes_*.png"))) == 5
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("Metrics/fid0.032k_train")] == [64, 128]
    for tag in ("Loss/r1_penalty", "Loss/path_length", "ADA/p"):
        assert tag in acc.Tags()["scalars"]
    kimg = [e.step for e in acc.Scalars("Progress/kimg")]
    assert kimg == sorted(set(kimg))  # written once per tick, by one process


@pytest.mark.slow
def test_two_process_resume_is_exact(full_run, tmp_path, demo_root):
    """Straight to 0.128 kimg == 0.064 kimg, stop, continue in the same folder: bit-identical."""
    full = full_run
    half = _run(tmp_path / "half", demo_root, 0.064)
    again = _run(tmp_path / "half", demo_root, 0.128)  # the folder holds a run: it continues it
    assert again == half
    a, b = load_checkpoint(full / "checkpoints" / "last.ckpt"), load_checkpoint(half / "checkpoints" / "last.ckpt")
    assert a["braingan"]["cur_nimg"] == b["braingan"]["cur_nimg"] == 128
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_process_count_and_trainer_choice():
    from omegaconf import OmegaConf

    t = OmegaConf.create({"devices": 2, "num_nodes": 3, "accelerator": "gpu"})
    assert requested_processes(t) == 6
    assert requested_processes(OmegaConf.create({"devices": [0, 1], "num_nodes": 1, "accelerator": "gpu"})) == 2
    assert requested_processes(OmegaConf.create({"devices": "auto", "num_nodes": 1, "accelerator": "cpu"})) == 1
    assert default_preset(["kimg=1"], cuda=False) == "experiment=cpu"
    assert default_preset(["kimg=1"], cuda=True) is None  # the config's trainer=gpu
    assert default_preset(["trainer=cpu"], cuda=False) is None  # the hardware chosen: no preset
    assert default_preset(["experiment=cpu"], cuda=True) is None
    # A sweep that a cluster launcher submits runs on the compute nodes: keep the config's gpu.
    assert default_preset(["-m", "hydra/launcher=slurm", "kimg=1"], cuda=False) is None
    assert default_preset(["-m", "kimg=1,2"], cuda=False) == "experiment=cpu"


def test_strategy_choice():
    from omegaconf import OmegaConf

    one = OmegaConf.create({"devices": 1, "num_nodes": 1, "accelerator": "cpu", "strategy": "ddp"})
    assert build_strategy(one) == "auto"  # never DistributedDataParallel around the GAN module
    two = OmegaConf.create({"devices": 2, "num_nodes": 1, "accelerator": "cpu", "strategy": "auto"})
    assert isinstance(build_strategy(two), GANDDPStrategy)
    with pytest.raises(ValueError, match="use auto or ddp"):
        build_strategy(OmegaConf.create({"devices": 2, "num_nodes": 1, "accelerator": "cpu", "strategy": "fsdp"}))


@pytest.mark.slow
def test_a_folder_continues_only_the_same_run(full_run, tmp_path):
    """A requeued job continues its folder; a run with other settings is refused there."""
    saved = load_checkpoint(full_run / "checkpoints" / "last.ckpt")["braingan"]["run_config"]
    assert continue_checkpoint(RunDir(full_run), dict(saved)) == full_run / "checkpoints" / "last.ckpt"
    longer = {**saved, "kimg": 10, "trainer/devices": 4, "batch_gpu": 4, "schedule/last_kimg": 5}
    assert "batch_gpu" in saved  # a smaller GPU may continue the run in smaller passes
    assert config_differences(saved, longer) == []
    other = {**saved, "model/r1_gamma": 123.0}
    assert config_differences(saved, other) == [f"model.r1_gamma: {saved['model/r1_gamma']} -> 123.0"]
    with pytest.raises(ValueError, match="already holds a run with other settings"):
        continue_checkpoint(RunDir(full_run), other)
    assert continue_checkpoint(RunDir(tmp_path), saved) is None


def test_slurm_batch_jobs_get_one_folder_per_job(monkeypatch):
    for k in ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(k, raising=False)
    assert slurm_run_dir("outputs", "outputs/d/t") == "outputs/d/t"
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert slurm_run_dir("outputs", "outputs/d/t") == "outputs/slurm/77"  # the same after a requeue
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_run_dir("outputs", "outputs/d/t") == "outputs/slurm/70_3"
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")
    assert slurm_run_dir("outputs", "outputs/d/t") == "outputs/d/t"
