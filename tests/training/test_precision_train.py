"""Mixed precision in training: conv_clamp=auto, regularizers in 16 bits, and a real bf16-mixed run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from braingan.experiment.settings import build_configs
from braingan.nn.config import NetworkConfig
from braingan.nn.discriminator import Discriminator
from braingan.nn.synthesis import Generator
from braingan.training import losses
from helpers.runs import compose, run_tool, tiny_overrides


@pytest.mark.parametrize(
    "overrides,precision,clamp",
    [
        ([], "32-true", None),
        ([], "bf16-mixed", 256.0),
        ([], "16-mixed", 256.0),
        (["model.num_fp16_res=0"], "16-mixed", None),  # nothing in 16 bits: nothing to clamp
        (["model.conv_clamp=null"], "16-mixed", None),
        (["model.conv_clamp=64"], "32-true", 64.0),
    ],
)
def test_build_configs_resolves_conv_clamp_auto(tmp_path, overrides, precision, clamp):
    cfg = compose(["model=tiny", "resolution=32", f"run_dir={tmp_path}", *overrides])
    net, _ = build_configs(cfg, 0, precision)
    assert net.conv_clamp == clamp
    assert net.num_fp16_res == cfg.model.num_fp16_res
    assert build_configs(cfg, 0)[0].conv_clamp == (
        64.0 if "model.conv_clamp=64" in overrides else None
    )  # default 32-true


# ----------------------------------------------------------------------------------------------
# R1 and path length under autocast


def _nets(seed=0):
    torch.manual_seed(seed)
    cfg = NetworkConfig(
        img_resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512, channel_max=16, conv_clamp=256
    )
    return Generator(cfg), Discriminator(cfg)


def _r1(G, D, dtype, grad_scale=1.0):
    real = (
        G(torch.randn(4, 16, generator=torch.Generator().manual_seed(1)), noise_mode="const")
        .detach()
        .requires_grad_(True)
    )
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        return losses.d_r1_penalty(D(real), real, grad_scale=grad_scale)


def _pl(G, dtype, grad_scale=1.0):
    ws = G.mapping(torch.randn(4, 16, generator=torch.Generator().manual_seed(2))).detach().requires_grad_(True)
    torch.manual_seed(3)  # the same projection noise each call
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        return losses.g_path_lengths(G.synthesis(ws, noise_mode="const"), ws, grad_scale=grad_scale)


def test_grad_scale_changes_nothing_in_fp32():
    G, D = _nets()
    assert torch.equal(_r1(G, D, None), _r1(G, D, None, grad_scale=2.0**10))
    assert torch.equal(_pl(G, None), _pl(G, None, grad_scale=2.0**10))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_regularizers_in_16_bits_stay_close_to_fp32(dtype):
    G, D = _nets()
    for name, ref, got in (("r1", _r1(G, D, None), _r1(G, D, dtype)), ("pl", _pl(G, None), _pl(G, dtype))):
        assert got.dtype == torch.float32 and torch.isfinite(got).all(), name
        assert ((got - ref).abs() / ref).max() < 0.15, (name, got, ref)
    # The penalty back-propagates into D through the 16-bit graph with finite FP32 gradients.
    _r1(G, D, dtype).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.blocks[0].parameters())


def test_lightning_initial_loss_scale_overflows_the_inner_fp16_gradient():
    """Why grad_scale defaults to 1: GradScaler's initial 2**16 on the R1 outputs overflows D's FP16 blocks."""
    G, D = _nets()
    assert torch.isfinite(_r1(G, D, torch.float16, grad_scale=1.0)).all()
    assert not torch.isfinite(_r1(G, D, torch.float16, grad_scale=2.0**16)).all()


# ----------------------------------------------------------------------------------------------
# Acceptance: the real entry point under bf16-mixed


@pytest.mark.slow
def test_bf16_mixed_entry_point_trains_with_finite_losses_and_weights(tmp_path, demo_root):
    """`python -m braingan.train trainer=cpu trainer.precision=bf16-mixed ...`: R1 and path length both run."""
    run = tmp_path / "run"
    overrides = tiny_overrides(
        tmp_path,
        demo_root,
        0.032,
        **{
            "trainer.precision": "bf16-mixed",
            "model.r1_interval": 2,  # steps 0 and 2 of 4 run both regularizers
            "model.pl_interval": 2,
        },
    )
    overrides = [o for o in overrides if not o.startswith("run_dir=")] + [f"hydra.run.dir={run}"]
    env = {**os.environ, "BRAINGAN_CACHE": str(tmp_path / "cache")}
    proc = run_tool("train", overrides, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in ("Loss/G", "Loss/D", "Loss/r1_penalty", "Loss/pl_penalty", "Loss/path_length", "D/real", "D/fake"):
        values = [e.value for e in acc.Scalars(tag)]
        assert values and all(np.isfinite(values)), (tag, values)
    assert max(e.value for e in acc.Scalars("Progress/nonfinite_steps")) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["braingan"]["cur_nimg"] == 32
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), key  # FP32 master weights
    net = ckpt["hyper_parameters"]["net"]
    assert net["num_fp16_res"] == 4
    # conv_clamp=auto under bf16-mixed: needs train() to pass cfg.trainer.precision to build_configs.
    assert net["conv_clamp"] == 256, "train() must call build_configs(cfg, c_dim, cfg.trainer.precision)"
