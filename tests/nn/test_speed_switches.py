"""Every speed switch (speed.* in conf/train.yaml) computes what the plain path computes, on CPU.

fused_upconv, fused_bias_act and channels_last change how G and D compute, never what: same
weights, same outputs, same first- and second-order gradients (R1 and path length
differentiate through the networks twice).
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from braingan.nn.config import NetworkConfig
from braingan.nn.discriminator import Discriminator
from braingan.nn.layers import EqualizedConv2d, make_fir_kernel, upsample2d
from braingan.nn.modulated import modulated_conv2d, upconv2d, upconv2d_reference
from braingan.nn.synthesis import Generator
from braingan.training import losses

PLAIN = dict(fused_upconv=False, fused_bias_act=False, channels_last=False)
FAST = dict(fused_upconv=True, fused_bias_act=True, channels_last=True)


def _cfg(res=16, c_dim=0, **speed):
    return NetworkConfig(
        img_resolution=res,
        img_channels=1,
        z_dim=16,
        w_dim=16,
        c_dim=c_dim,
        mapping_layers=2,
        channel_base=2048,
        channel_max=16,
        **speed,
    )


@pytest.mark.parametrize("groups", [1, 3])
def test_upconv_is_zero_insertion_fir_and_conv(groups):
    torch.manual_seed(0)
    fir = make_fir_kernel()
    x = torch.randn(2, 3 * groups, 7, 5, dtype=torch.float64)  # odd, non-square: the padding must be exact
    w = torch.randn(4 * groups, 3, 3, 3, dtype=torch.float64)
    plain = upconv2d_reference(x, w, fir, groups)
    # The reference is zero insertion, FIR and conv; away from the border it is the padded conv.
    padded = F.conv2d(upsample2d(x, fir), w, padding=1, groups=groups)
    torch.testing.assert_close(plain[..., 2:-2, 2:-2], padded[..., 2:-2, 2:-2], rtol=1e-12, atol=1e-12)
    fused = upconv2d(x, w, fir, groups)
    assert fused.shape == plain.shape == (2, 4 * groups, 14, 10)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate,up", [(True, 1), (True, 2), (False, 1)])
def test_modulated_conv_bias_and_gain_fold_in(fused, demodulate, up):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    weight = torch.randn(4, 5, 3 if demodulate else 1, 3 if demodulate else 1, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    fir = make_fir_kernel().double()
    kw = dict(demodulate=demodulate, up=up, fir=fir, fused=fused)
    plain = (modulated_conv2d(x, weight, styles, **kw) + bias[None, :, None, None]) * 1.7
    folded = modulated_conv2d(x, weight, styles, **kw, fused_up=up > 1, bias=bias, gain=1.7)
    torch.testing.assert_close(folded, plain, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "activation,down,k,bias",
    [("lrelu", 1, 3, True), ("lrelu", 2, 3, True), ("linear", 2, 1, False), ("lrelu", 1, 1, True)],
)
def test_equalized_conv_fused_bias_act(activation, down, k, bias):
    torch.manual_seed(2)
    a = EqualizedConv2d(6, 5, k, bias=bias, activation=activation, down=down, conv_clamp=0.8)
    b = EqualizedConv2d(6, 5, k, bias=bias, activation=activation, down=down, conv_clamp=0.8, fused_bias_act=True)
    b.load_state_dict(a.state_dict())
    if bias:
        a.bias.data.normal_()
        b.bias.data.copy_(a.bias.data)
    x = torch.randn(2, 6, 8, 8) * 4
    ya, yb = a(x, gain=0.5), b(x, gain=0.5)
    assert (ya.abs() == 0.4).any()  # the clamp (0.8 x gain 0.5) is exercised
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-6)


def _assert_close(actual, expected, rel=2e-5):
    """Equal up to FP32 rounding relative to the tensor's scale (parts of G and D always compute in FP32)."""
    scale = expected.abs().max().item()
    assert scale > 0
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def _pair(make, cfg_kwargs):
    torch.manual_seed(3)
    plain = make(_cfg(**cfg_kwargs, **PLAIN)).double()
    fast = make(_cfg(**cfg_kwargs, **FAST)).double()
    fast.load_state_dict(plain.state_dict())  # same keys: a checkpoint loads under any switch
    return plain, fast


def _perturb(net):
    """Non-zero biases and noise strengths, so folding them in is actually tested."""
    g = torch.Generator().manual_seed(4)
    for name, p in net.named_parameters():
        if name.endswith("bias") or name.endswith("noise_strength"):
            p.data.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


@pytest.mark.parametrize("c_dim", [0, 2])
def test_generator_fast_path_matches_plain_with_gradients_of_both_orders(c_dim):
    plain, fast = _pair(Generator, dict(c_dim=c_dim))
    _perturb(plain)
    fast.load_state_dict(plain.state_dict())
    z = torch.randn(4, 16, dtype=torch.float64)
    c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).double() if c_dim else None
    outs, grads = [], []
    for G in (plain, fast):
        ws = G.mapping(z, c).detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        # Path-length penalty: a double backward through the synthesis network (same projection noise).
        torch.manual_seed(7)
        penalty = losses.g_path_lengths(img, ws).square().sum() + img.square().mean()
        outs.append(img)
        grads.append(torch.autograd.grad(penalty, list(G.synthesis.parameters())))
    _assert_close(outs[1], outs[0])
    for gp, gf in zip(*grads):
        if gp.abs().max() > 0:
            _assert_close(gf, gp, rel=1e-4)
        else:
            assert gf.abs().max() == 0
    assert sum(g.abs().sum() for g in grads[0]) > 0


def test_discriminator_fast_path_matches_plain_with_r1_gradients():
    plain, fast = _pair(Discriminator, dict(c_dim=2))
    _perturb(plain)
    fast.load_state_dict(plain.state_dict())
    img = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).double()
    results = []
    for D in (plain, fast):
        real = img.clone().requires_grad_(True)
        logits = D(real, c)
        r1 = losses.d_r1_penalty(logits, real).sum()  # double backward through D
        results.append((logits, torch.autograd.grad(r1 + logits.sum(), list(D.parameters()))))
    _assert_close(results[1][0], results[0][0])
    for gp, gf in zip(results[0][1], results[1][1]):
        _assert_close(gf, gp, rel=1e-4)


def test_channels_last_reaches_the_convolutions():
    G = Generator(_cfg(**FAST))
    seen = []
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        for m in itertools.chain.from_iterable((b.conv1,) for b in G.synthesis.blocks)
    ]
    G(torch.randn(2, 16), noise_mode="const")
    for h in hooks:
        h.remove()
    assert seen and all(seen)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_fast_path_under_reduced_precision_autocast(dtype):
    # The mixed-precision recipe with every switch on: the 16-bit blocks agree with the plain
    # path to the precision of the 16-bit format.
    torch.manual_seed(5)
    cfg_plain = _cfg(num_fp16_res=2, conv_clamp=256, **PLAIN)
    cfg_fast = _cfg(num_fp16_res=2, conv_clamp=256, **FAST)
    G1, G2 = Generator(cfg_plain), Generator(cfg_fast)
    G2.load_state_dict(G1.state_dict())
    D1, D2 = Discriminator(cfg_plain), Discriminator(cfg_fast)
    D2.load_state_dict(D1.state_dict())
    z = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=dtype):
        a, b = G1(z, noise_mode="const"), G2(z, noise_mode="const")
        da, db = D1(a), D2(b)
    assert torch.isfinite(b).all() and torch.isfinite(db).all()
    torch.testing.assert_close(b, a, rtol=0.05, atol=0.05)
    torch.testing.assert_close(db, da, rtol=0.05, atol=0.05)


def test_checkpoints_from_before_upsample_border_keep_their_images():
    old_dict = {
        k: v
        for k, v in _cfg().to_dict().items()
        if k not in ("fused_upconv", "fused_bias_act", "channels_last", "upsample_border")
    }
    old = NetworkConfig.from_dict(old_dict)
    assert old.upsample_border == "zero" and NetworkConfig.from_dict(_cfg().to_dict()).upsample_border == "full"
    torch.manual_seed(6)
    G_old = Generator(old)
    G_full = Generator(_cfg())
    G_full.load_state_dict(G_old.state_dict())
    z = torch.randn(2, 16)
    img_old = G_old(z, noise_mode="const")
    # The zero-border path is the zero-padded conv after up-sampling, layer by layer.
    x = torch.randn(2, 16, 4, 4)
    w, s, fir = torch.randn(16, 16, 3, 3), torch.rand(2, 16) + 0.5, make_fir_kernel()
    zero = modulated_conv2d(x, w, s, up=2, fir=fir, fused=False, fused_up=True, up_border="zero")
    expected = F.conv2d(upsample2d(x * s[:, :, None, None], fir), w, padding=1)
    expected = (
        expected * (w[None] * s[:, None, :, None, None]).square().sum([2, 3, 4]).add(1e-8).rsqrt()[:, :, None, None]
    )
    torch.testing.assert_close(zero, expected, rtol=1e-5, atol=1e-5)
    # ...and it differs from the full-border path at the edges, so the key matters.
    assert not torch.allclose(img_old, G_full(z, noise_mode="const"), atol=1e-3)
