"""Modulated convolution with weight demodulation (StyleGAN2, section 2.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layers import blur2d, upsample2d

HALF_DTYPES = (torch.float16, torch.bfloat16)  # 16-bit dtypes: the modulated kernel is pre-normalized in FP32 first


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


def upconv2d_zero_border(x: torch.Tensor, weight: torch.Tensor, fir: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Zero insertion and FIR cut to [2H, 2W], then a zero-padded k x k conv (upsample_border=zero)."""
    return F.conv2d(upsample2d(x, fir, 2), weight, padding=weight.shape[-1] // 2, groups=groups)


def upconv2d_reference(x: torch.Tensor, weight: torch.Tensor, fir: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Zero insertion, FIR, then the k x k convolution over the filter's full support.

    [N, Cin, H, W] -> [N, Cout, 2H, 2W]. The up-sampled image keeps k // 2 extra filtered pixels
    per side, so the convolution sees the true filtered signal at the border rather than zeros.
    """
    k = weight.shape[-1]
    return F.conv2d(upsample2d(x, fir, 2, margin=k // 2), weight, groups=groups)


def upconv2d(
    x: torch.Tensor,  # [N, Cin, H, W]
    weight: torch.Tensor,  # [Cout, Cin, k, k] cross-correlation kernel (as F.conv2d takes it)
    fir: torch.Tensor,  # [f, f] low-pass kernel (4 taps)
    groups: int = 1,
) -> torch.Tensor:  # [N, Cout, 2H, 2W]
    """FIR up-sampling by 2 followed by a k x k convolution, as one transposed conv + FIR.

    Equal to `upconv2d_reference`: zero insertion, the filter and the convolution are all
    linear and shift-invariant on the up-sampled grid, so they commute; the stride-2 transposed
    convolution is zero insertion + convolution without multiplying the inserted zeros (a
    quarter of the multiplies), and the filter then runs on the output channels. Written for
    3x3 kernels and 4-tap filters (StyleGAN2's), checked in the tests.
    """
    cout_g, cin_g, kh, kw = weight.shape
    if (kh, kw) != (3, 3) or fir.shape[0] != 4:
        return upconv2d_reference(x, weight, fir, groups)
    # conv_transpose2d takes [Cin, Cout / groups, k, k] and convolves (it does not correlate): flip.
    w = weight.reshape(groups, cout_g // groups, cin_g, kh, kw).transpose(1, 2)
    w = w.reshape(groups * cin_g, cout_g // groups, kh, kw).flip([2, 3])
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)  # [N, Cout, 2H + 1, 2W + 1]
    return blur2d(x, fir * 4, (1, 1))


def modulated_conv2d(
    x: torch.Tensor,  # [N, Cin, H, W] input features
    weight: torch.Tensor,  # [Cout, Cin, k, k] shared kernel
    styles: torch.Tensor,  # [N, Cin] per-sample scales of the input channels
    demodulate: bool = True,  # normalize each output feature map to unit expected std
    up: int = 1,  # 1 = same size, 2 = FIR up-sample by 2 before the convolution
    fir: torch.Tensor | None = None,  # [f, f] low-pass kernel, needed when up > 1
    fused: bool = True,  # True: one grouped conv with per-sample kernels; False: scale activations
    fused_up: bool = False,  # up-sampling as a transposed conv + FIR (`upconv2d`) instead of zero insertion, FIR, conv
    up_border: str = "full",  # "full" (StyleGAN2) or "zero" (zero-padded after up-sampling; `fused_up` does not apply)
    bias: torch.Tensor | None = None,  # [Cout] added after demodulation
    gain: float = 1.0,  # multiplies the result (bias included): folds an activation's gain into the scaling
) -> torch.Tensor:  # [N, Cout, H * up, W * up]
    """Convolution whose kernel is scaled per sample by `styles`, then optionally demodulated.

    Returns gain * (demodulated conv + bias). Both paths give the same result. The grouped
    path builds N kernels explicitly; the other scales the activations before a shared
    convolution and the outputs after it, which avoids grouped convolutions (faster in
    training on most GPUs). Demodulation, bias and gain cost one fused multiply-add.

    Computes in x's dtype, or in the autocast dtype while autocast is on. In 16 bits (FP16,
    BF16) the demodulated kernel and styles are pre-normalized in FP32 first (`prenormalize`);
    FP32 and FP64 compute the definition directly. The demodulation coefficients come from FP32
    or wider (FP64 for FP64).
    """
    n, cin, h, w_ = x.shape
    cout, _, kh, kw = weight.shape
    dev = x.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    x = x.to(dtype)
    if demodulate and dtype in HALF_DTYPES:  # FP32 and FP64 compute as defined, in their own precision
        with torch.autocast(device_type=dev, enabled=False):
            weight, styles = prenormalize(weight.float(), styles.float())
    weight = weight.to(dtype)
    styles = styles.to(dtype)
    # In FP32 even under FP16 autocast: sum of squares of |w s| > 256 would overflow to inf.
    scale = None  # [N, Cout] per-sample output scale: demodulation times gain
    if demodulate:
        with torch.autocast(device_type=dev, enabled=False):
            wide = torch.float64 if dtype == torch.float64 else torch.float32  # never below FP32
            scale = demodulation_coefficients(weight.to(wide), styles.to(wide)) * gain
        scale = scale.to(dtype)
    elif gain != 1:
        scale = torch.full([1, cout], gain, dtype=dtype, device=x.device)
    b = (bias.to(dtype) * gain).reshape(1, -1, 1, 1) if bias is not None else None

    def conv(x: torch.Tensor, wt: torch.Tensor, groups: int) -> torch.Tensor:
        if up > 1:
            if up != 2:
                raise ValueError(f"up={up}: only 2 is supported")
            if fir is None:
                raise ValueError("up=2 needs the FIR up-sampling kernel `fir`")
            if up_border == "zero":
                return upconv2d_zero_border(x, wt, fir, groups)
            return (upconv2d if fused_up else upconv2d_reference)(x, wt, fir, groups)
        return F.conv2d(x, wt, padding=kh // 2, groups=groups)

    if not fused:
        x = conv(x * styles[:, :, None, None], weight, 1)
        if scale is None:
            return x if b is None else x + b
        s = scale[:, :, None, None]
        return x * s if b is None else torch.addcmul(b, x, s)

    wts = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, Cout, Cin, k, k]
    if scale is not None:
        wts = wts * scale[:, :, None, None, None]
    x = conv(x.reshape(1, n * cin, h, w_), wts.reshape(n * cout, cin, kh, kw), n)
    x = x.reshape(n, cout, *x.shape[2:])
    return x if b is None else x + b
