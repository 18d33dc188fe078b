"""Mixed precision in G and D: which parts compute in 16 bits, conv clamping, modulated-conv numerics.

CPU autocast supports both bfloat16 and float16 (torch >= 2.x), so both are exercised here;
float16 convolutions are slow on CPU, so those tests use a handful of samples.
"""

import pytest
import torch
import torch.nn.functional as F

from braingan.nn.config import NetworkConfig
from braingan.nn.discriminator import Discriminator
from braingan.nn.layers import EqualizedConv2d, EqualizedLinear
from braingan.nn.modulated import modulated_conv2d, prenormalize
from braingan.nn.synthesis import Generator, SynthesisLayer, ToRGBLayer


def _cfg(**kw):
    base = {
        "img_resolution": 32,
        "z_dim": 16,
        "w_dim": 16,
        "mapping_layers": 2,
        "channel_base": 512,
        "channel_max": 16,
        "c_dim": 2,
    }
    base.update(kw)
    return NetworkConfig(**base)


def _output_dtypes(model: torch.nn.Module, run) -> dict[str, torch.dtype]:
    """Runs `run()` and returns the output dtype of every layer (module name -> dtype)."""
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (EqualizedLinear, EqualizedConv2d, SynthesisLayer, ToRGBLayer)):
            hooks.append(m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, out.dtype)))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def _expected_G(name: str, low16: set[int], dtype) -> torch.dtype:
    if name.startswith("mapping") or name.endswith("affine"):
        return torch.float32  # mapping network and style affines: FP32 always
    block = int(name.split(".")[2])  # synthesis.blocks.<i>.<layer>
    return dtype if block in low16 else torch.float32


def _expected_D(name: str, low16: set[int], dtype) -> torch.dtype:
    if not name.startswith("blocks"):
        return torch.float32  # epilogue (mbstd, conv, fc, out) and the class embedding: FP32 always
    return dtype if int(name.split(".")[1]) in low16 else torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_only_the_highest_resolutions_compute_in_16_bits(dtype):
    # 32x32 with num_fp16_res=2: G blocks 16 and 32 (indices 2, 3) and D blocks 32 and 16
    # (indices 0, 1) in 16 bits; G's 4x4 and 8x8 blocks, D's 8x8 block and epilogue in FP32.
    cfg = _cfg(num_fp16_res=2)
    G, D = Generator(cfg), Discriminator(cfg)
    z, c = torch.randn(2, 16), torch.eye(2)[[0, 1]]
    out = {}

    def run():
        with torch.autocast("cpu", dtype=dtype):
            out["img"] = G(z, c)
            out["logits"] = D(out["img"], c)

    g_dtypes = _output_dtypes(G, run)
    d_dtypes = _output_dtypes(D, run)
    assert len(g_dtypes) > 10 and len(d_dtypes) > 10
    for name, got in g_dtypes.items():
        assert got == _expected_G(name, {2, 3}, dtype), name
    for name, got in d_dtypes.items():
        assert got == _expected_D(name, {0, 1}, dtype), name
    assert "c_embed" in d_dtypes and "epilogue.fc" in d_dtypes
    # Images leave G in FP32 (the skip image is accumulated in FP32); logits leave D in FP32.
    assert out["img"].dtype == torch.float32 and out["logits"].dtype == torch.float32
    assert torch.isfinite(out["img"]).all() and torch.isfinite(out["logits"]).all()
    # The backward pass works through the mixed graph and gives finite FP32 gradients.
    out["logits"].sum().backward()
    for p in list(G.parameters()) + list(D.parameters()):
        assert p.grad is None or (p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all())


def test_num_fp16_res_zero_keeps_everything_fp32_under_autocast():
    cfg = _cfg(num_fp16_res=0)
    G, D = Generator(cfg), Discriminator(cfg)
    z, c = torch.randn(2, 16), torch.eye(2)[[0, 1]]

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            D(G(z, c), c)

    dtypes = {**_output_dtypes(G, run), **{"D." + k: v for k, v in _output_dtypes(D, run).items()}}
    assert dtypes and set(dtypes.values()) == {torch.float32}


def test_default_plan_is_the_four_highest_resolutions_never_4x4():
    assert [r for r in (4, 8, 16, 32, 64, 128, 256) if NetworkConfig(img_resolution=256).reduced_precision_at(r)] == [
        32,
        64,
        128,
        256,
    ]
    # At 32x32 "the 4 highest" would include 4x4: it stops at 8x8.
    assert [r for r in (4, 8, 16, 32) if _cfg().reduced_precision_at(r)] == [8, 16, 32]
    assert not any(_cfg(num_fp16_res=0).reduced_precision_at(r) for r in (4, 8, 16, 32))


def test_mixed_precision_output_stays_close_to_fp32():
    torch.manual_seed(0)
    cfg = _cfg(num_fp16_res=4, conv_clamp=256)
    G, D = Generator(cfg), Discriminator(cfg)
    z, c = torch.randn(4, 16), torch.eye(2)[[0, 1, 0, 1]]
    ref = G(z, c, noise_mode="const")
    ref_logits = D(ref, c)
    for dtype, tol in ((torch.bfloat16, 0.1), (torch.float16, 0.02)):
        with torch.autocast("cpu", dtype=dtype):
            img = G(z, c, noise_mode="const")
            logits = D(ref, c)
        assert (img - ref).abs().max() < tol * ref.std(), dtype
        assert (logits - ref_logits).abs().max() < tol * ref_logits.abs().max(), dtype


def test_conv_clamp_is_applied_in_the_16_bit_blocks():
    clamp = 0.05  # far below the natural output range, so the clamp must bind
    cfg = _cfg(num_fp16_res=4, conv_clamp=clamp)
    G, D = Generator(cfg), Discriminator(cfg)
    peaks = {}
    hooks = []
    for prefix, net in (("G.", G), ("D.", D)):
        for name, m in net.named_modules():
            clamped = isinstance(m, (SynthesisLayer, ToRGBLayer)) or (
                isinstance(m, EqualizedConv2d) and m.conv_clamp is not None
            )
            if clamped:
                hooks.append(
                    m.register_forward_hook(
                        lambda mod, args, out, key=prefix + name: peaks.__setitem__(
                            key, (out.dtype, out.detach().abs().max().item())
                        )
                    )
                )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        D(G(torch.randn(4, 16), torch.eye(2)[[0, 1, 0, 1]]), torch.eye(2)[[0, 1, 0, 1]])
    reduced = {k: v for k, v in peaks.items() if v[0] == torch.bfloat16}
    assert len(reduced) >= 10  # G conv0/conv1/torgb of 3 blocks, D fromrgb/conv0/conv1 of 3 blocks
    for key, (_, peak) in reduced.items():
        bound = clamp * (
            2**-0.5 if key.endswith("conv1") and key.startswith("D.") else 1
        )  # D conv1 runs with gain sqrt(1/2)
        assert peak <= bound * 1.01, (key, peak)  # 1 % for bf16 rounding of the bound
    # The clamp binds (outputs reach the bound) rather than never being reached.
    assert sum(peak >= 0.95 * clamp * 2**-0.5 for _, peak in reduced.values()) >= len(reduced) // 2
    # The skip path of D has no bias_act and no clamp, as in StyleGAN2-ADA.
    assert all(m.conv_clamp is None for b in D.blocks for m in [b.skip])


def test_conv_clamp_auto_and_old_checkpoints():
    N = NetworkConfig
    assert N.resolve_conv_clamp("auto", "16-mixed") == 256 and N.resolve_conv_clamp("auto", "bf16-mixed") == 256
    assert N.resolve_conv_clamp("auto", "32-true") is None
    assert N.resolve_conv_clamp("auto", "bf16-mixed", num_fp16_res=0) is None  # nothing runs in 16 bits
    assert N.resolve_conv_clamp(None, "16-mixed") is None and N.resolve_conv_clamp(128, "32-true") == 128
    with pytest.raises(ValueError, match="conv_clamp"):
        N.resolve_conv_clamp("sometimes", "16-mixed")
    with pytest.raises(ValueError, match="conv_clamp"):
        N(conv_clamp="auto")  # must be resolved before it reaches the network config
    # A checkpoint written before num_fp16_res existed rebuilds with the default.
    old = {k: v for k, v in _cfg().to_dict().items() if k != "num_fp16_res"}
    assert N.from_dict(old).num_fp16_res == 4 and N.from_dict(old) == _cfg()


# ----------------------------------------------------------------------------------------------
# Modulated convolution in 16 bits


def _big_styles(n: int, cin: int) -> torch.Tensor:
    """Styles of magnitude ~1e4: fine in FP32, but |x s| summed over a 3x3xCin kernel overflows FP16."""
    return (torch.rand(n, cin) + 0.5) * 2e4


def test_prenormalize_changes_nothing_after_demodulation():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 8, 6, 6), torch.randn(5, 8, 3, 3), torch.randn(3, 8) * 30
    w2, s2 = prenormalize(weight, styles)
    assert w2.abs().amax(dim=[1, 2, 3]).allclose(torch.full([5], 1 / (8 * 9) ** 0.5))
    assert s2.abs().amax(dim=1).allclose(torch.ones(3))
    assert ((w2[None] * s2[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) <= 1 + 1e-6).all()
    for fused in (True, False):
        a = modulated_conv2d(x, weight, styles, fused=fused)
        b = modulated_conv2d(x, w2, s2, fused=fused)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_naive_fp16_modulated_conv_overflows():
    """What pre-normalization prevents: scaling FP16 activations by large styles before the conv."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 32, 8, 8), torch.randn(16, 32, 3, 3), _big_styles(2, 32)
    naive = F.conv2d((x.half() * styles.half()[:, :, None, None]), weight.half(), padding=1)
    assert not torch.isfinite(naive).all()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 0.01), (torch.bfloat16, 0.05)])
def test_16_bit_modulated_conv_matches_fp32_with_large_styles(fused, dtype, tol):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 32, 8, 8), torch.randn(16, 32, 3, 3), _big_styles(2, 32)
    ref = modulated_conv2d(x, weight, styles, fused=fused)  # FP32, unit-variance output maps
    for run in ("cast", "autocast"):
        if run == "cast":  # activations already in 16 bits, parameters in FP32 (a 16-bit block)
            got = modulated_conv2d(x.to(dtype), weight, styles, fused=fused)
        else:  # FP32 activations under autocast: computes in the autocast dtype
            with torch.autocast("cpu", dtype=dtype):
                got = modulated_conv2d(x, weight, styles, fused=fused)
        assert got.dtype == dtype, run
        assert torch.isfinite(got).all(), run
        assert (got.float() - ref).abs().max() < tol * ref.abs().max(), run


def test_16_bit_modulated_conv_with_up_sampling_and_without_demodulation():
    from braingan.nn.layers import make_fir_kernel

    torch.manual_seed(0)
    x, weight = torch.randn(2, 8, 6, 6), torch.randn(4, 8, 3, 3)
    styles = torch.rand(2, 8) + 0.5
    fir = make_fir_kernel()
    for demod in (True, False):
        ref = modulated_conv2d(x, weight, styles, demodulate=demod, up=2, fir=fir, fused=False)
        got = modulated_conv2d(x.half(), weight, styles, demodulate=demod, up=2, fir=fir, fused=False)
        assert got.dtype == torch.float16 and got.shape == (2, 4, 12, 12)
        assert (got.float() - ref).abs().max() < 0.01 * ref.abs().max(), demod


@pytest.mark.parametrize("fused", [False, True])
def test_16_bit_modulated_conv_gradients_match_fp32(fused):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 32, 8, 8), torch.randn(16, 32, 3, 3), _big_styles(2, 32)
    probe = torch.randn(2, 16, 8, 8)

    def grads(dtype):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        out = modulated_conv2d(leaves[0].to(dtype), leaves[1], leaves[2], fused=fused)
        return torch.autograd.grad((out.float() * probe).sum(), leaves)

    for name, ref, got in zip(("x", "weight", "styles"), grads(torch.float32), grads(torch.float16)):
        assert torch.isfinite(got).all(), name
        assert (got - ref).abs().max() < 0.02 * ref.abs().max(), name
