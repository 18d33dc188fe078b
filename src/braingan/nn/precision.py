"""Which dtype each part of G and D computes in under mixed precision (StyleGAN2-ADA recipe).

Lightning's `16-mixed` / `bf16-mixed` run the training step under `torch.autocast`. Left
alone, autocast would run every convolution of G and D in 16 bits. StyleGAN2-ADA (appendix
on mixed precision) uses reduced precision only in the highest resolutions and FP32
elsewhere; a block asks `block_dtype` for its dtype and wraps its body in `block_context`.
"""

from __future__ import annotations

import contextlib

import torch


def block_dtype(device_type: str, reduced: bool) -> torch.dtype:
    """The autocast dtype (float16 / bfloat16) for a `reduced` block while autocast is on; FP32 otherwise."""
    if reduced and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.float32


def block_context(device_type: str, dtype: torch.dtype):
    """Autocast stays as it is for a reduced-precision block and is switched off for an FP32 one."""
    if dtype == torch.float32:
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def fp32_context(device_type: str):
    """A region that computes in FP32 even under autocast (its inputs must be cast to float32)."""
    return torch.autocast(device_type=device_type, enabled=False)
