"""Modulated convolution with weight demodulation (StyleGAN2, section 2.2)."""
from __future__ import annotations

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
    """
    n, cin, h, w_ = x.shape
    cout, _, kh, kw = weight.shape
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    # In FP32 even under FP16 autocast: sum of squares of |w s| > 256 would overflow to inf.
    dcoefs = None
    if demodulate:
        with torch.autocast(device_type=x.device.type, enabled=False):
            dcoefs = demodulation_coefficients(weight.float(), styles.float()).to(x.dtype)  # [N, Cout]

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
