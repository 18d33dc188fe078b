"""Exponential moving average of the generator weights (half-life in kimg, with ramp-up)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, ema_kimg: float, cur_nimg: int, rampup: float | None) -> float:
    """Per-step decay so that the average has a half-life of `ema_kimg` thousand images.

    With ramp-up the half-life is capped at `cur_nimg * rampup`, so early training is not
    dominated by the random initialization.
    """
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- model + beta * (ema - model) for parameters; buffers (w_avg, noise) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b.detach())
