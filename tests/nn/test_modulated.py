import itertools

import torch
import torch.nn.functional as F

from braingan.nn.layers import make_fir_kernel, upsample2d
from braingan.nn.modulated import modulated_conv2d


def _reference(x, weight, styles, demodulate, up=1):
    """Explicit per-sample loop: scale the kernel, normalize it, convolve one image at a time."""
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        xi = x[i : i + 1]
        k = weight.shape[-1]
        if up > 1:  # zero insertion and FIR, keeping the filtered border the conv needs
            out.append(F.conv2d(upsample2d(xi, make_fir_kernel(), up, margin=k // 2), w))
        else:
            out.append(F.conv2d(xi, w, padding=k // 2))
    return torch.cat(out)


def test_modulated_conv_equals_per_sample_reference():
    torch.manual_seed(1)
    x = torch.randn(3, 5, 8, 8)
    weight = torch.randn(7, 5, 3, 3)
    styles = torch.randn(3, 5) + 1
    for fused in (True, False):
        for demod in (True, False):
            got = modulated_conv2d(x, weight, styles, demodulate=demod, fused=fused)
            assert torch.allclose(got, _reference(x, weight, styles, demod), atol=1e-4), (fused, demod)


def test_modulated_conv_up_equals_reference():
    x = torch.randn(2, 4, 6, 6)
    weight = torch.randn(3, 4, 3, 3)
    styles = torch.rand(2, 4) + 0.5
    fir = make_fir_kernel()
    for fused, fused_up in itertools.product((True, False), (True, False)):
        got = modulated_conv2d(x, weight, styles, up=2, fir=fir, fused=fused, fused_up=fused_up)
        assert got.shape == (2, 3, 12, 12)
        assert torch.allclose(got, _reference(x, weight, styles, True, up=2), atol=1e-4), (fused, fused_up)


def test_fused_and_unfused_gradients_agree():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    styles = torch.randn(2, 4, requires_grad=True)
    grads = []
    for fused in (True, False):
        y = modulated_conv2d(x, weight, styles, fused=fused)
        g = torch.autograd.grad(y.square().sum(), [x, weight, styles])
        grads.append(g)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_demodulation_gives_unit_output_std():
    torch.manual_seed(0)
    x = torch.randn(16, 64, 16, 16)  # unit-variance input
    weight = torch.randn(64, 64, 3, 3)
    styles = torch.rand(16, 64) * 3 + 0.1  # arbitrary positive styles
    y = modulated_conv2d(x, weight, styles, demodulate=True)
    per_map_std = y.std(dim=[2, 3])
    assert abs(per_map_std.mean().item() - 1.0) < 0.05
    # Without demodulation the scale follows the styles and is far from 1.
    y2 = modulated_conv2d(x, weight, styles, demodulate=False)
    assert y2.std().item() > 5


def _reference_float64(x, weight, styles, demodulate, up=1):
    """The definition in float64, sharing no code with the library: per-sample kernel w * s,
    demodulation 1 / sqrt(sum (w s)^2 + 1e-8), one plain conv2d per sample. Up-sampling by 2:
    zero insertion, the [1, 3, 3, 1] filter (gain 4) keeping one extra filtered pixel per side,
    then the unpadded 3x3 convolution (StyleGAN2's full border)."""
    assert x.dtype == weight.dtype == styles.dtype == torch.float64
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    fir = (taps[:, None] * taps[None, :]) / taps.sum() ** 2 * 4  # [4, 4], sums to 4 = up^2
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]  # [Cout, Cin, 3, 3]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        xi = x[i : i + 1]  # [1, Cin, H, W]
        if up == 2:
            c, h, wd = xi.shape[1:]
            z = torch.zeros(1, c, 2 * h, 2 * wd, dtype=torch.float64)
            z[:, :, ::2, ::2] = xi  # zero insertion
            # 4-tap filter after up-sampling by 2: pad (2, 1), plus one pixel per side for the 3x3 conv.
            z = F.pad(z, [3, 2, 3, 2])
            z = F.conv2d(z, fir.expand(c, 1, 4, 4), groups=c)  # symmetric: correlation = convolution
            out.append(F.conv2d(z, w))
        else:
            out.append(F.conv2d(xi, w, padding=1))
    return torch.cat(out)


def test_float64_computes_in_float64():
    """Only 16-bit dtypes are pre-normalized in FP32: float64 must match its float64 definition to ~1e-12
    (pre-normalizing in FP32 would leave ~1e-7 errors)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 8, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 6, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 6, generator=g, dtype=torch.float64) + 1
    fir = make_fir_kernel().double()
    for demod, fused in itertools.product((True, False), (True, False)):
        got = modulated_conv2d(x, weight, styles, demodulate=demod, fused=fused)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, _reference_float64(x, weight, styles, demod), rtol=0, atol=1e-12)
        for fused_up in (True, False):
            got = modulated_conv2d(x, weight, styles, demodulate=demod, up=2, fir=fir, fused=fused, fused_up=fused_up)
            assert got.shape == (3, 5, 16, 16) and got.dtype == torch.float64
            ref = _reference_float64(x, weight, styles, demod, up=2)
            torch.testing.assert_close(
                got, ref, rtol=0, atol=1e-12, msg=lambda m, case=(demod, fused, fused_up): f"{case}: {m}"
            )
