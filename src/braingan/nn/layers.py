"""Building blocks of StyleGAN2: equalized learning rate, FIR resampling, bias + activation.

Everything is plain PyTorch (no compiled extensions). Tensor layouts are given in comments
as [N, C, H, W]. Paper references: Karras et al. 2019/2020 (StyleGAN, StyleGAN2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the signal's second moment through leaky ReLU


# ----------------------------------------------------------------------------------------------
# Bias + activation


def bias_act(
    x: torch.Tensor,  # [N, C, ...]
    b: torch.Tensor | None,  # [C] or None
    act: str = "lrelu",  # 'lrelu' or 'linear'
    gain: float = 1.0,  # extra multiplier on top of the activation's own gain
    clamp: float | None = None,  # clamp the output to [-clamp, clamp]; None = no clamp
) -> torch.Tensor:
    """Adds a per-channel bias, applies the activation with its gain, then optionally clamps."""
    if b is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + b.to(x.dtype).reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def folded_act(
    x: torch.Tensor,  # [N, C, ...] with bias and the activation's gain already applied
    act: str = "lrelu",  # 'lrelu' or 'linear'
    clamp: float | None = None,  # clamp the output to [-clamp, clamp]; None = no clamp
) -> torch.Tensor:
    """The rest of `bias_act` when bias and gain were folded into the preceding op.

    leaky_relu(g z) = g leaky_relu(z) for g > 0, so a layer can scale its kernel (or
    demodulation) and bias by the gain and leave only the activation and the clamp.
    """
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    return x.clamp(-clamp, clamp) if clamp is not None else x


# ----------------------------------------------------------------------------------------------
# FIR filters and resampling (upfirdn2d in pure PyTorch)


def make_fir_kernel(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR low-pass filter as a normalized 2-D kernel [k, k] that sums to 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def _fir_depthwise(
    x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int, int, int], stride: int = 1
) -> torch.Tensor:
    """Pads x by (left, right, top, bottom) and convolves each channel with `kernel` (true convolution)."""
    c = x.shape[1]
    pl, pr, pt, pb = pad
    if min(pad) < 0:
        raise ValueError("negative padding is not supported")
    x = F.pad(x, [pl, pr, pt, pb])
    w = kernel.flip([0, 1]).to(dtype=x.dtype, device=x.device)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, w, stride=stride, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2, margin: int = 0) -> torch.Tensor:
    """FIR up-sampling: zero insertion, then the filter scaled by factor**2.

    [N, C, H, W] -> [N, C, H * factor + 2 margin, W * factor + 2 margin]. A constant image stays
    constant (away from the border). `margin` keeps that many more filtered pixels on each side
    (what a following unpadded convolution needs to see the filter's full support).
    """
    n, c, h, w = x.shape
    k = kernel.shape[0]
    # Zero insertion: [N, C, H, 1, W, 1] padded to [N, C, H, f, W, f].
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, factor - 1, 0, 0, 0, factor - 1])
    x = x.reshape(n, c, h * factor, w * factor)
    p0 = (k + factor - 1) // 2 + margin
    p1 = (k - factor) // 2 + margin
    return _fir_depthwise(x, kernel * (factor**2), (p0, p1, p0, p1))


def downsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR down-sampling: the filter, then every `factor`-th pixel. [N, C, H, W] -> [N, C, H/f, W/f]."""
    k = kernel.shape[0]
    p0 = (k - factor + 1) // 2
    p1 = (k - factor) // 2
    return _fir_depthwise(x, kernel, (p0, p1, p0, p1), stride=factor)


def blur2d(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """FIR filter with explicit (before, after) padding on both axes, no resampling."""
    return _fir_depthwise(x, kernel, (pad[0], pad[1], pad[0], pad[1]))


# ----------------------------------------------------------------------------------------------
# Equalized learning rate layers


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalized learning rate (weights scaled at run time)."""

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        bias: bool = True,  # learn a bias
        bias_init: float = 0.0,  # initial value of the bias (e.g. 1 for style affines)
        lr_multiplier: float = 1.0,  # learning-rate multiplier (0.01 in the mapping network)
        activation: str = "linear",  # 'linear' or 'lrelu'
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b: torch.Tensor | None = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.activation}"


class EqualizedConv2d(nn.Module):
    """Convolution with equalized learning rate, optional FIR down-sampling, bias and activation.

    Used by the discriminator. With `down=2` the input is low-pass filtered before a stride-2
    convolution, as in StyleGAN2.
    """

    fir: torch.Tensor  # buffer [taps, taps]; empty without down-sampling

    def __init__(
        self,
        in_channels: int,  # input channels
        out_channels: int,  # output channels
        kernel_size: int,  # width and height of the kernel
        bias: bool = True,  # learn a bias
        activation: str = "linear",  # 'linear' or 'lrelu'
        down: int = 1,  # 1 = no resampling, 2 = FIR down-sampling by 2
        fir_taps=(1, 3, 3, 1),  # low-pass filter used when down > 1
        conv_clamp: float | None = None,  # clamp outputs to +-this (for FP16); None = off
        fused_bias_act: bool = False,  # gains folded into the kernel and the bias into the conv (fewer passes)
    ):
        super().__init__()
        self.activation = activation
        self.fused_bias_act = fused_bias_act
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("fir", make_fir_kernel(fir_taps) if down > 1 else torch.empty(0), persistent=False)

    def forward(
        self, x: torch.Tensor, gain: float = 1.0
    ) -> torch.Tensor:  # [N, Cin, H, W] -> [N, Cout, H/down, W/down]
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if self.fused_bias_act:
            # leaky_relu(g z) = g leaky_relu(z) for g > 0: the total gain scales the (small) kernel
            # and the bias, the conv adds the bias, and one activation pass remains.
            g = gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
            w = self.weight.to(x.dtype) * (self.weight_gain * g)
            b = self.bias.to(x.dtype) * g if self.bias is not None else None
            return folded_act(self._conv(x, w, b), self.activation, clamp)
        w = self.weight.to(x.dtype) * self.weight_gain
        return bias_act(self._conv(x, w, None), self.bias, act=self.activation, gain=gain, clamp=clamp)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        k = w.shape[-1]
        if self.down > 1:
            if k == 1:
                return F.conv2d(downsample2d(x, self.fir, self.down), w, b)
            # Filter with enough padding that the strided k x k conv lands on H/down pixels.
            f = self.fir.shape[0]
            total = (f - self.down) + (k - 1)
            x = blur2d(x, self.fir, ((total + 1) // 2, total // 2))
            return F.conv2d(x, w, b, stride=self.down)
        return F.conv2d(x, w, b, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, k={k}, down={self.down}, act={self.activation}"
