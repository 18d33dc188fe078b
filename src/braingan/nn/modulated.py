"""Modulated convolution with weight demodulation (StyleGAN2, section 2.2)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layers import upsample2d


def demodulation_coefficients(
    weight: torch.Tensor,  # [Cout, Cin, k, k]
    styles: torch.Tensor,  # [N, Cin]
    eps: float = 1e-8,
) -> torch.Tensor:  # [N, Cout]
    """1 / sigma_j: the inverse L2 norm of each sample's modulated kernel (eq. 3 of the paper)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, Cout, Cin, k, k]
    return (w.square().sum(dim=[2, 3, 4]) + eps).rsqrt()


def prenormalize(
    weight: torch.Tensor,  # [Cout, Cin, k, k] FP32
    styles: torch.Tensor,  # [N, Cin] FP32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescales the kernel per output channel and the styles per sample so nothing overflows in FP16.

    weight / (sqrt(Cin k k) max|weight_o|) and styles / max|styles_n| (StyleGAN2-ADA, mixed
    precision): every |w s| <= 1 / sqrt(fan_in), so the squared norm of a modulated kernel is at
    most 1 and the styles are at most 1. Demodulation divides by that norm, which cancels both
    factors: only for demodulated convolutions. The factors are constants to autograd: the
    output does not depend on them (up to the demodulation eps), so gradients of every order are the same without them.
    """
    _, cin, kh, kw = weight.shape
    w_max = weight.detach().abs().amax(dim=[1, 2, 3], keepdim=True).clamp_min(1e-8)  # [Cout, 1, 1, 1]
    s_max = styles.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-8)  # [N, 1]
    return weight / (w_max * math.sqrt(cin * kh * kw)), styles / s_max


def modulated_conv2d(
    x: torch.Tensor,  # [N, Cin, H, W] input features
    weight: torch.Tensor,  # [Cout, Cin, k, k] shared kernel
    styles: torch.Tensor,  # [N, Cin] per-sample scales of the input channels
    demodulate: bool = True,  # normalize each output feature map to unit expected std
    up: int = 1,  # 1 = same size, 2 = FIR up-sample by 2 before the convolution
    fir: torch.Tensor | None = None,  # [f, f] low-pass kernel, needed when up > 1
    fused: bool = True,  # True: one grouped conv with per-sample kernels; False: scale activations
) -> torch.Tensor:  # [N, Cout, H * up, W * up]
    """Convolution whose kernel is scaled per sample by `styles`, then optionally demodulated.

    Both paths give the same result. The grouped path builds N kernels explicitly; the
    other scales the activations before a shared convolution and the outputs after it,
    which avoids grouped convolutions (faster in training on most GPUs).

    Computes in x's dtype, or in the autocast dtype while autocast is on. In 16 bits the
    demodulated kernel and styles are pre-normalized in FP32 first (`prenormalize`), and the
    demodulation coefficients always come from FP32.
    """
    n, cin, h, w_ = x.shape
    cout, _, kh, kw = weight.shape
    dev = x.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    x = x.to(dtype)
    if demodulate and dtype != torch.float32:
        with torch.autocast(device_type=dev, enabled=False):
            weight, styles = prenormalize(weight.float(), styles.float())
    weight = weight.to(dtype)
    styles = styles.to(dtype)
    # In FP32 even under FP16 autocast: sum of squares of |w s| > 256 would overflow to inf.
    dcoefs = None
    if demodulate:
        with torch.autocast(device_type=dev, enabled=False):
            dcoefs = demodulation_coefficients(weight.float(), styles.float()).to(dtype)  # [N, Cout]

    if not fused:
        x = x * styles[:, :, None, None]
        if up > 1:
            x = upsample2d(x, fir, up)
        x = F.conv2d(x, weight, padding=kh // 2)
        if dcoefs is not None:
            x = x * dcoefs[:, :, None, None]
        return x

    wts = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, Cout, Cin, k, k]
    if dcoefs is not None:
        wts = wts * dcoefs[:, :, None, None, None]
    x = x.reshape(1, n * cin, h, w_)
    if up > 1:
        x = upsample2d(x, fir, up)
    x = F.conv2d(x, wts.reshape(n * cout, cin, kh, kw), padding=kh // 2, groups=n)
    return x.reshape(n, cout, *x.shape[2:])
