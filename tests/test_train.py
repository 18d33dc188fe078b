"""End-to-end runs of the real training entry point on tiny settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from braingan.checkpoint import load_checkpoint, load_generator
from braingan.experiment.run import train
from braingan.reporting.tensorboard import EVAL_TAGS
from braingan.training.module import NonFiniteLossError
from helpers.runs import REPO, compose, tiny_overrides

SCALAR_TAGS = {
    "Loss/G",
    "Loss/D",
    "Loss/r1_penalty",
    "Loss/path_length",
    "D/real",
    "D/fake",
    "ADA/p",
    "Progress/kimg",
    "Speed/img_per_s",
    "Speed/sec_per_kimg",
}


def _events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_make_train_writes_a_complete_run(tmp_path, demo_root):
    """`make train ARGS=...` -> python -m braingan.train: checkpoints, TensorBoard, samples, .hydra."""
    run = tmp_path / "run"
    overrides = tiny_overrides(tmp_path, demo_root, 0.128)
    overrides = [o for o in overrides if not o.startswith("run_dir=")] + [f"hydra.run.dir={run}"]
    proc = subprocess.run(
        ["make", "-s", "train", f"ARGS={' '.join(overrides)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (run / ".hydra" / "config.yaml").is_file()
    ckpts = run / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    assert sorted(p.name for p in ckpts.glob("kimg_*.ckpt")) == ["kimg_000000.064.ckpt", "kimg_000000.128.ckpt"]
    assert not any("=" in p.name for p in ckpts.iterdir())
    assert (run / "samples" / "reals.png").is_file()
    fakes = sorted((run / "samples").glob("fakes_*.png"))
    assert [p.name for p in fakes][:2] == ["fakes_000000.000.png", "fakes_000000.032.png"]
    assert len(fakes) == 5
    grid = np.asarray(Image.open(fakes[-1]))
    assert grid.shape == (4 * 32, 4 * 32) and grid.dtype == np.uint8  # 16 grayscale samples
    acc = _events(run)
    tags = acc.Tags()
    assert SCALAR_TAGS <= set(tags["scalars"]), SCALAR_TAGS - set(tags["scalars"])
    assert {"samples/fakes", "samples/reals"} <= set(tags["images"])
    kimg = [e.value for e in acc.Scalars("Progress/kimg")]
    assert kimg == sorted(kimg) and abs(kimg[-1] - 0.128) < 1e-6
    assert all(np.isfinite(e.value) for t in SCALAR_TAGS for e in acc.Scalars(t))
    # TensorBoard's HPARAMS tab: the run's settings and the scalars shown beside them, in the event file.
    hparams = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model/r1_gamma"].number_value == pytest.approx(0.1)
    assert start.hparams["dataset/name"].string_value == "demo"
    assert start.hparams["batch_size"].number_value == 8
    metrics = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment.metric_infos
    assert {"Loss/G", "Loss/D", "ADA/p", *EVAL_TAGS} <= {m.name.tag for m in metrics}  # make eval's too
    assert (run / "tb" / "hparams.yaml").is_file()
    assert (run / "train.log").is_file()
    ckpt = load_checkpoint(ckpts / "last.ckpt")
    assert ckpt["braingan"]["cur_nimg"] == 128
    for key in ("G.", "D.", "G_ema.", "augment_pipe.p", "pl_mean", "sample_z"):
        assert any(k.startswith(key) for k in ckpt["state_dict"]), key
    assert len(ckpt["optimizer_states"]) == 2
    assert {"torch", "numpy", "python"} <= set(ckpt["braingan"]["rng"])
    # The checkpoint alone rebuilds the EMA generator.
    G = load_generator(ckpts / "last.ckpt")
    assert G(torch.randn(2, G.z_dim)).shape == (2, 1, 32, 32)


def _final_state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_resume_is_exact(tmp_path, demo_root):
    """N steps straight == N/2 steps, stop, resume=<last.ckpt>, N/2 steps (weights, EMA, kimg, ADA p, Adam)."""
    extra = {
        "model.r1_interval": 4,  # regularization steps land in both halves
        "model.pl_interval": 2,
        "augment.kimg": 0.05,  # make ADA p move visibly in a few steps
        "augment.target": 0.0,
    }
    full = train(compose(tiny_overrides(tmp_path / "full", demo_root, 0.128, **extra)))
    half_dir = tmp_path / "half"
    half = train(compose(tiny_overrides(half_dir, demo_root, 0.064, **extra)))
    resumed = train(
        compose(tiny_overrides(half_dir, demo_root, 0.128, resume=str(half / "checkpoints" / "last.ckpt"), **extra))
    )
    assert resumed == half
    a, b = _final_state(full), _final_state(resumed)
    assert a["braingan"]["cur_nimg"] == b["braingan"]["cur_nimg"] == 128
    assert a["braingan"]["batch_idx"] == b["braingan"]["batch_idx"] == 16
    p = a["state_dict"]["augment_pipe.p"]
    assert 0 < float(p) < 1, "ADA p should have moved in this test"
    assert set(a["state_dict"]) == set(b["state_dict"])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in sa["state"].items():
            assert torch.equal(st["exp_avg"], sb["state"][pid]["exp_avg"])
    # The resumed run kept its kimg clock: snapshots from both halves sit in one folder.
    names = sorted(p.name for p in (half / "checkpoints").glob("kimg_*.ckpt"))
    assert names == ["kimg_000000.064.ckpt", "kimg_000000.128.ckpt"]


def _tiles(path: Path, res: int) -> np.ndarray:
    g = np.asarray(Image.open(path), dtype=np.float32) / 127.5 - 1
    rows, cols = g.shape[0] // res, g.shape[1] // res
    return g.reshape(rows, res, cols, res).transpose(0, 2, 1, 3).reshape(-1, res, res)


@pytest.mark.slow
def test_it_learns_a_single_image(tmp_path, demo_root):
    """On a one-image dataset the EMA samples at fixed latents move toward that image."""
    src = sorted((demo_root / "keras_png_slices_train").glob("*_slice_16.nii.png"))[0]
    img_dir = tmp_path / "one"
    img_dir.mkdir()
    Image.open(src).resize((32, 32), Image.LANCZOS).save(img_dir / "brain.png")
    target = np.asarray(Image.open(img_dir / "brain.png"), dtype=np.float32) / 127.5 - 1
    run = train(compose(tiny_overrides(tmp_path, img_dir, 0.4, dataset="folder", **{"schedule.image_kimg": 0.2})))
    mse = {p.name: float(((_tiles(p, 32) - target) ** 2).mean()) for p in (run / "samples").glob("fakes_*.png")}
    start, end = mse["fakes_000000.000.png"], mse["fakes_000000.400.png"]
    assert end <= 0.5 * start, mse


@pytest.mark.slow
def test_nonfinite_losses_are_skipped_counted_and_stop_the_run(tmp_path, demo_root):
    """An absurd learning rate blows D up: steps are skipped, counted, and the run stops naming a checkpoint."""
    cfg = compose(
        tiny_overrides(
            tmp_path, demo_root, 1.0, **{"model.lr_d": 1e30, "max_nonfinite": 6, "schedule.last_kimg": 0.008}
        )
    )
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    msg = str(err.value)
    # 6 > augment.interval: ADA updated its p on NaN logits on the way without failing.
    assert "6 training steps in a row" in msg
    assert str(tmp_path / "run" / "checkpoints" / "last.ckpt") in msg
    acc = _events(tmp_path / "run")
    assert max(e.value for e in acc.Scalars("Progress/nonfinite_steps")) >= 1
