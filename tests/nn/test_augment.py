"""Tests for the ADA augmentation pipe and the p controller.

Expected values are computed independently (torch.flip, slicing, closed-form controller steps).
"""

from __future__ import annotations

import math

import pytest
import torch

from braingan.nn.augment import P_MAX, AugmentPipe, ada_adjust

OFF = dict(xflip=False, translate=0.0, scale=0.0, rotate_deg=0.0, brightness=0.0, contrast=0.0)
NO_CUDA = not torch.cuda.is_available()


def only(p: float = 1.0, **enabled) -> AugmentPipe:
    """A pipe with every transform off except the given ones."""
    return AugmentPipe(**{**OFF, **enabled}, p_init=p)


def noise(n: int = 8, c: int = 1, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1  # [N, C, H, W] in [-1, 1]


def changed(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [N] bool
    return (out != x).flatten(1).any(1)


def test_p_zero_is_exact_identity():
    x = noise()
    out = AugmentPipe(p_init=0.0)(x)
    assert torch.equal(out, x)


def flipped_or_not(out: torch.Tensor, x: torch.Tensor, atol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """[N] bool each: the sample is exactly x's mirror image, or exactly x."""

    def same(a, b):
        return (a - b).flatten(1).abs().amax(1) <= atol

    return same(out, x.flip(3)), same(out, x)


def test_xflip_equals_torch_flip():
    x = noise(n=64)
    mirrored, kept = flipped_or_not(only(xflip=True)(x), x)  # power-of-two size: exact
    assert (mirrored ^ kept).all() and mirrored.any() and kept.any()
    y = noise(n=64, h=24, w=40)
    mirrored, kept = flipped_or_not(only(xflip=True)(y), y, atol=1e-5)
    assert (mirrored ^ kept).all() and mirrored.any() and kept.any()


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_xflip_mirrors_with_probability_half_p(p):
    """The official pipeline: applied with probability p, then a fair coin. At p = 0.5 a quarter of
    the images are mirrored, never half (D could not tell an image from its mirror: the flip leaks)."""
    torch.manual_seed(11)
    n = 40_000
    x = torch.arange(64.0).reshape(1, 1, 8, 8).div(32).sub(1).expand(n, 1, 8, 8)  # asymmetric: no row is its own mirror
    mirrored, kept = flipped_or_not(only(p=p, xflip=True)(x), x)
    assert (mirrored ^ kept).all()
    q = p / 2
    rate = mirrored.float().mean().item()
    assert abs(rate - q) < 5 * math.sqrt(q * (1 - q) / n), (rate, q)  # 5 sigma = 0.011 at p = 0.5


def test_integer_translation_is_an_exact_shift():
    torch.manual_seed(1)
    x = noise(n=64, h=32, w=32)
    out = only(translate=0.125)(x)
    m = round(0.125 * 32)  # max shift in pixels
    shifts = []
    for xi, oi in zip(x, out):
        found = [
            (dx, dy)
            for dy in range(-m, m + 1)
            for dx in range(-m, m + 1)
            # out[y, x] == in[y - dy, x - dx] on the valid region
            if torch.equal(
                oi[:, max(dy, 0) : 32 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)],
                xi[:, max(-dy, 0) : 32 + min(-dy, 0), max(-dx, 0) : 32 + min(-dx, 0)],
            )
        ]
        assert len(found) == 1, found
        shifts.append(found[0])
    dxs, dys = zip(*shifts)
    assert min(dxs) < 0 < max(dxs) and min(dys) < 0 < max(dys)  # both directions on both axes


@pytest.mark.parametrize(
    "kind", [dict(rotate_deg=10.0), dict(scale=0.2), dict(rotate_deg=10.0, scale=0.2, translate=0.125)]
)
def test_rotation_and_scale_change_images_but_keep_constants(kind):
    x = noise(n=16)
    assert changed(only(**kind)(x), x).all()
    const = torch.full((4, 1, 32, 32), 0.3)
    out = only(**kind)(const)
    torch.testing.assert_close(out, const, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.mean(), const.mean(), atol=1e-7, rtol=0)


def test_rotation_is_in_pixel_space_on_non_square_images():
    # A centred round blob is unchanged by any rotation about the centre, as long as the rotation
    # respects the aspect ratio (rotating normalized coordinates would stretch it ~0.45 here).
    h, w = 32, 64
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / (2 * 3.0**2)).expand(16, 1, h, w)
    out = only(rotate_deg=90.0)(blob)
    centre = xx.abs() <= 14  # reflection padding puts mirrored copies near the left/right borders
    assert changed(out, blob).all()
    assert (out - blob)[..., centre].abs().max() < 0.03


def test_brightness_and_contrast():
    x = noise(n=16)
    out = only(brightness=0.2)(x)
    diff = (out - x).flatten(1)  # one additive offset per sample
    torch.testing.assert_close(diff, diff[:, :1].expand_as(diff), atol=1e-6, rtol=0)
    assert diff[:, 0].abs().min() > 0
    out = only(contrast=0.5)(x)
    mean_x, mean_o = x.mean((1, 2, 3), keepdim=True), out.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(mean_o, mean_x, atol=1e-6, rtol=0)  # contrast is about each image's mean
    ratio = ((out - mean_o).flatten(1) / (x - mean_x).flatten(1)).median(1).values  # the factor c > 0
    assert (ratio > 0).all() and ((ratio - 1).abs() > 1e-3).all()


def test_gradients_flow_and_untouched_samples_pass_through():
    torch.manual_seed(0)
    x = noise(n=32).requires_grad_(True)
    weight = torch.randn(32, 1, 32, 32)
    out = AugmentPipe(p_init=0.5)(x)
    (out * weight).sum().backward()
    grad = x.grad
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).abs().sum(1) > 0).all()
    untouched = ~changed(out.detach(), x.detach())
    assert 0 < untouched.sum() < 32
    assert torch.equal(grad[untouched], weight[untouched])  # identity samples: identity gradient


@pytest.mark.parametrize(
    "kind, expected",
    [
        (dict(xflip=True), 0.15),  # applied with p, then a fair coin: mirrored with p / 2
        (dict(translate=0.125), 0.3 * (1 - (1 / 8) ** 2)),  # round(U(-4, 4)) == 0 with prob 1/8 per axis
        (dict(scale=0.2), 0.3),
        (dict(rotate_deg=10.0), 0.3),
        (dict(brightness=0.2), 0.3),
        (dict(contrast=0.5), 0.3),
    ],
)
def test_fraction_of_augmented_samples_is_p(kind, expected):
    """Every transform but the x-flip changes a sample with probability p (translation: unless it rounds to 0)."""
    torch.manual_seed(123)
    n = 4000
    x = noise(n=n, h=32, w=32)
    frac = changed(only(p=0.3, **kind)(x), x).float().mean().item()
    std = math.sqrt(expected * (1 - expected) / n)
    assert abs(frac - expected) < 4 * std, (frac, expected)


def test_transforms_are_chosen_independently():
    torch.manual_seed(7)
    n = 4000
    x = noise(n=n, h=16, w=16)
    out = only(p=0.3, xflip=True, brightness=0.2)(x)

    def is_shift_of(a, b):  # [N] a - b is one constant per sample
        d = (a - b).flatten(1)
        return (d - d[:, :1]).abs().amax(1) < 1e-5

    flipped = is_shift_of(out, x.flip(3))
    assert (flipped ^ is_shift_of(out, x)).all()  # every sample is explained by exactly one flip state
    brightened = (out.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs() > 1e-6
    for frac, q in [
        (flipped.float().mean(), 0.15),
        (brightened.float().mean(), 0.3),
        ((flipped & brightened).float().mean(), 0.045),
    ]:
        assert abs(frac.item() - q) < 4 * math.sqrt(q * (1 - q) / n)


def test_seeded_pipe_is_deterministic():
    x = noise(n=16)
    pipe = AugmentPipe(p_init=0.7)
    torch.manual_seed(42)
    a = pipe(x)
    torch.manual_seed(42)
    b = pipe(x)
    torch.manual_seed(43)
    c = pipe(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_three_channel_grayscale_stays_grayscale():
    torch.manual_seed(0)
    x = noise(n=8, c=1).expand(8, 3, 32, 32).contiguous()
    out = AugmentPipe(p_init=1.0)(x)
    assert out.shape == x.shape
    assert changed(out, x).all()
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_output_dtype_matches_input(dtype):
    x = noise(n=8).to(dtype)
    pipe = AugmentPipe(p_init=0.5)
    torch.manual_seed(5)
    out = pipe(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.manual_seed(5)
    ref = pipe(x.float())  # sampling is done in float32 internally
    assert torch.equal(out, ref.to(dtype))


def test_p_is_a_float32_buffer_in_the_state_dict():
    pipe = AugmentPipe(p_init=0.25)
    sd = pipe.state_dict()
    assert list(sd) == ["p"] and sd["p"].dtype == torch.float32 and sd["p"].item() == 0.25
    other = AugmentPipe()
    other.load_state_dict(sd)
    assert other.p.item() == 0.25
    pipe.set_p(0.123456)
    pipe.to(torch.bfloat16)  # e.g. a bf16-true module cast must not round p
    assert pipe.p.dtype == torch.float32 and pipe.p.item() == pytest.approx(0.123456, abs=1e-7)
    with pytest.raises(ValueError):
        pipe.set_p(1.5)


def test_ada_adjust_controller():
    step = 4 * 64 / (500 * 1000)
    assert ada_adjust(0.1, rt=0.8, target=0.6, batch_images=4 * 64, ada_kimg=500) == pytest.approx(0.1 + step)
    assert ada_adjust(0.1, rt=0.2, target=0.6, batch_images=4 * 64, ada_kimg=500) == pytest.approx(0.1 - step)
    assert ada_adjust(0.1, rt=0.6, target=0.6, batch_images=4 * 64, ada_kimg=500) == 0.1
    assert ada_adjust(0.0, rt=-1.0, target=0.6, batch_images=256, ada_kimg=500) == 0.0  # never below 0
    assert ada_adjust(0.99999, rt=1.0, target=0.6, batch_images=10**6, ada_kimg=500) == P_MAX < 1.0
    assert torch.tensor(P_MAX, dtype=torch.float32).item() < 1.0  # still < 1 once stored in the buffer
    p = 0.0  # 500 kimg of an overfitting D takes p from 0 to (almost) 1
    for _ in range(500_000 // 256):
        p = ada_adjust(p, rt=0.9, target=0.6, batch_images=256, ada_kimg=500)
    assert p == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError):
        ada_adjust(0.1, rt=float("nan"), target=0.6, batch_images=256, ada_kimg=500)


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda(dtype):
    x = noise(n=16).to("cuda", dtype)
    mirrored, kept = flipped_or_not(only(xflip=True).cuda()(x), x)
    assert (mirrored ^ kept).all() and mirrored.any()
    pipe = AugmentPipe(p_init=0.5).cuda()
    torch.manual_seed(0)
    out = pipe(x)
    assert out.device == x.device and out.dtype == dtype
