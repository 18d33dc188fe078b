import math

import torch
import torch.nn.functional as F

from braingan.nn.layers import (
    LRELU_GAIN,
    EqualizedConv2d,
    EqualizedLinear,
    bias_act,
    downsample2d,
    make_fir_kernel,
    upsample2d,
)


def test_fir_kernel_is_normalized_outer_product():
    k = make_fir_kernel()
    expected = torch.tensor([1.0, 3, 3, 1])
    expected = torch.outer(expected, expected) / 64
    assert torch.allclose(k, expected)


def test_upsample_shape_and_preserves_constant_mean():
    x = torch.full([2, 3, 8, 8], 0.7)
    y = upsample2d(x, make_fir_kernel())
    assert y.shape == (2, 3, 16, 16)
    # Away from the zero-padded border the constant is reproduced exactly.
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 0.7), atol=1e-6)


def test_downsample_shape_and_preserves_constant_mean():
    x = torch.full([2, 3, 16, 12], -0.3)
    y = downsample2d(x, make_fir_kernel())
    assert y.shape == (2, 3, 8, 6)
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.full_like(y[..., 1:-1, 1:-1], -0.3), atol=1e-6)


def test_upsample_then_downsample_keeps_smooth_signal():
    # A smooth ramp survives up- and down-sampling almost unchanged in the interior.
    ramp = torch.linspace(-1, 1, 32)[None, None, :, None].expand(1, 1, 32, 32).contiguous()
    y = downsample2d(upsample2d(ramp, make_fir_kernel()), make_fir_kernel())
    assert y.shape == ramp.shape
    assert (y - ramp)[..., 4:-4, 4:-4].abs().max() < 1e-3


def test_upsample_matches_explicit_zero_insertion():
    x = torch.randn(1, 1, 5, 5)
    k = make_fir_kernel()
    z = torch.zeros(1, 1, 10, 10)
    z[..., ::2, ::2] = x
    ref = F.conv2d(F.pad(z, [2, 1, 2, 1]), (k * 4).flip([0, 1])[None, None])
    assert torch.allclose(upsample2d(x, k), ref, atol=1e-6)


def test_equalized_linear_runtime_scaling():
    torch.manual_seed(0)
    layer = EqualizedLinear(256, 64, lr_multiplier=0.01, bias_init=1.0)
    # Stored weights are N(0, 1/lr^2); the effective weight is stored * lr / sqrt(fan_in).
    assert abs(layer.weight.std().item() - 100.0) < 5.0
    x = torch.randn(4, 256)
    expected = x @ (layer.weight * 0.01 / math.sqrt(256)).t() + layer.bias * 0.01
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # Unit-variance input -> unit-variance output at init (the point of equalized lr).
    y = EqualizedLinear(512, 512, bias=False)(torch.randn(2048, 512))
    assert abs(y.std().item() - 1.0) < 0.05


def test_equalized_conv_scaling_and_down():
    conv = EqualizedConv2d(8, 4, 3)
    x = torch.randn(2, 8, 16, 16)
    ref = F.conv2d(x, conv.weight / math.sqrt(8 * 9), conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    assert EqualizedConv2d(8, 4, 3, down=2)(x).shape == (2, 4, 8, 8)
    assert EqualizedConv2d(8, 4, 1, down=2, bias=False)(x).shape == (2, 4, 8, 8)


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-1.0, 2.0]]).reshape(1, 2, 1, 1)
    b = torch.tensor([0.5, -0.5])
    y = bias_act(x, b, act="lrelu")
    expected = torch.tensor([-0.5 * 0.2, 1.5]) * LRELU_GAIN
    assert torch.allclose(y.flatten(), expected)
    assert bias_act(x * 100, None, act="linear", clamp=3.0).abs().max() == 3.0
