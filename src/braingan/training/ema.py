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
    """ema <- model + beta * (ema - model) for parameters; buffers (w_avg, noise) are copied.

    Multi-tensor (foreach) kernels: one launch per list on CUDA instead of two per tensor, the
    same arithmetic as `p.lerp(p_ema, beta)` tensor by tensor.
    """
    ema_params = [p.detach() for p in ema.parameters()]
    torch._foreach_copy_(ema_params, torch._foreach_lerp([p.detach() for p in model.parameters()], ema_params, beta))
    ema_buffers = list(ema.buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, [b.detach() for b in model.buffers()])
