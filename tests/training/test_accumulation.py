"""Gradient accumulation (batch_gpu): the same step as one pass over the whole batch.

Two identical tiny models take their first training step on the same batch, one in a single
forward pass per phase, one in two passes of batch_gpu = batch / 2 whose gradients accumulate.
The gradients each optimizer sees before it steps must agree within float32 summation error,
for G main, D main and R1. The run is made deterministic where the two would draw their random
numbers differently: no style mixing, no augmentation, const noise; path length (whose running
mean moves once per pass, as in StyleGAN2-ADA) is checked separately to run.
"""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from braingan.experiment.settings import data_and_configs
from braingan.experiment.trainer import trainer_settings
from braingan.training.module import StyleGAN2Module
from helpers.runs import compose, tiny_overrides


class GradientTap(pl.Callback):
    """Copies the gradients each optimizer holds right before every step it takes."""

    def __init__(self):
        self.seen: list[tuple[str, list[torch.Tensor]]] = []

    def on_train_start(self, trainer, module) -> None:
        for name, opt in zip(("G", "D"), trainer.optimizers):
            opt.register_step_pre_hook(partial(self._tap, name))

    def _tap(self, name, opt, args, kwargs) -> None:
        grads = [p.grad.detach().clone() for group in opt.param_groups for p in group["params"] if p.grad is not None]
        self.seen.append((name, grads))


def first_step_gradients(tmp_path, demo_root, batch_gpu, **extra) -> list[tuple[str, list[torch.Tensor]]]:
    settings = {
        "batch_gpu": batch_gpu,
        "model.style_mixing": 0,
        "augment.mode": "none",
        "model.pl_weight": 0,
        "model.r1_interval": 1,  # R1 in the first step
        **extra,
    }
    cfg = compose(tiny_overrides(tmp_path, demo_root, 0.008, **settings))  # one step of 8 images
    pl.seed_everything(0, verbose=False)
    dm, net, train_cfg = data_and_configs(cfg)
    module = StyleGAN2Module(net, train_cfg, dm.data_info())
    module.G.synthesis.forward = partial(module.G.synthesis.forward, noise_mode="const")
    tap = GradientTap()
    trainer = pl.Trainer(
        **trainer_settings(cfg.trainer),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[tap],
    )
    trainer.fit(module, datamodule=dm)
    assert module.cur_nimg == 8
    return tap.seen


def largest_difference(a, b) -> float:
    return max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-12)) for x, y in zip(a, b))


@pytest.mark.slow
def test_two_passes_give_the_gradients_of_one(tmp_path, demo_root):
    whole = first_step_gradients(tmp_path / "one", demo_root, "null")
    halves = first_step_gradients(tmp_path / "two", demo_root, 4)
    assert [name for name, _ in whole] == [name for name, _ in halves] == ["G", "D", "D"]  # G main, D main, R1
    for (name, a), (_, b) in zip(halves, whole):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6 * float(y.abs().max()) + 1e-9, msg=name)
    # The comparison is sharp enough to see a real difference: with a minibatch-std group larger
    # than the pass (8 > 4) D's statistic changes, and so do the gradients.
    whole8 = first_step_gradients(tmp_path / "one8", demo_root, "null", **{"model.mbstd_group_size": 8})
    halves8 = first_step_gradients(tmp_path / "two8", demo_root, 4, **{"model.mbstd_group_size": 8})
    assert largest_difference(halves8[1][1], whole8[1][1]) > 1e-3


@pytest.mark.slow
def test_accumulation_with_every_phase_trains(tmp_path, demo_root):
    """batch_gpu with path length, ADA and style mixing on: steps are taken and finite."""
    seen = first_step_gradients(
        tmp_path, demo_root, 2, **{"model.style_mixing": 0.9, "augment.mode": "ada", "model.pl_weight": 2.0}
    )
    assert [name for name, _ in seen] == ["G", "G", "D", "D"]  # G main, path length, D main, R1
    assert all(torch.isfinite(g).all() for _, grads in seen for g in grads)
