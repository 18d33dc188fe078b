"""MS-SSIM diversity: the scale choice torchmetrics accepts, the closed cases, the pair sampler, the image tap."""

from __future__ import annotations

import pytest
import torch

from braingan.metrics.ms_ssim import (
    disjoint_pairs,
    ms_ssim,
    ms_ssim_fits,
    ms_ssim_scales,
    pair_ms_ssim,
    pair_plan,
    plan_diversity,
    plan_indices,
)
from braingan.metrics.sources import keeping

# torchmetrics documents MS-SSIM's range as [0, 1] (MultiScaleStructuralSimilarityIndexMeasure's
# plot_lower_bound / plot_upper_bound); with normalize="relu" each scale's term is clamped at 0,
# so every value lies in [0, 1], 1 for identical images.
LOW, HIGH = 0.0, 1.0


def _noise(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("size,expected", [(16, (2, 7)), (32, (2, 11)), (64, (3, 11)), (128, (4, 11)), (256, (5, 11))])
def test_the_scale_choice_at_model_sizes(size, expected):
    assert ms_ssim_scales(size) == expected


@pytest.mark.parametrize("size", [16, 32, 41, 43, 64, 81, 88, 98, 128])
def test_the_chosen_scales_run_in_torchmetrics_at_any_size(size):
    """41-43 and 81-98 px are where the earlier rule (size > (kernel - 1) * 2^(scales - 1)) chose what torchmetrics refuses."""
    x, y = _noise(2, size, 0).float(), _noise(2, size, 1).float()
    scales, kernel = ms_ssim_scales(size)
    assert ms_ssim_fits(size, scales, kernel)
    value = ms_ssim(x, y, data_range=255.0, scales=scales, kernel_size=kernel)
    assert torch.isfinite(value).all() and ((value >= LOW) & (value <= HIGH)).all()


def test_torchmetrics_refuses_four_scales_of_eleven_at_88_px():
    """Its real bound is size // (scales - 1)^2 > kernel - 1 (88 // 9 = 9), not size > (kernel - 1) * 2^(scales - 1)."""
    assert not ms_ssim_fits(88, 4, 11)
    with pytest.raises(ValueError, match="height must be larger"):
        ms_ssim(_noise(1, 88, 0).float(), _noise(1, 88, 1).float(), data_range=255.0, scales=4, kernel_size=11)


@pytest.mark.parametrize("size", [32, 64])
def test_a_set_of_identical_images_has_ms_ssim_one(size):
    images = _noise(1, size, 2).expand(10, -1, -1, -1).contiguous()
    result = pair_ms_ssim(images, disjoint_pairs(10, 5, seed=0))
    assert result.pairs == 5
    assert result.mean == pytest.approx(1.0, abs=1e-5) and result.std < 1e-5


@pytest.mark.parametrize("size", [32, 64])
def test_independent_uniform_noise_has_ms_ssim_near_zero(size):
    result = pair_ms_ssim(_noise(64, size, 3), disjoint_pairs(64, 32, seed=0))
    assert LOW <= result.mean < 0.1  # measured 0.02-0.03 at 32 and 64 px


def test_a_collapsed_set_scores_higher_than_a_varied_one():
    base = _noise(1, 32, 4).float()
    jitter = torch.randn(20, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 10
    collapsed = (base + jitter).clamp(0, 255).round().to(torch.uint8)  # one image, slightly perturbed
    pairs = disjoint_pairs(20, 10, seed=0)
    assert pair_ms_ssim(collapsed, pairs).mean > 0.5 > pair_ms_ssim(_noise(20, 32, 6), pairs).mean


def test_the_value_depends_on_the_pixel_scale_only_through_data_range_but_on_the_offset():
    """Scaled levels with a scaled data_range agree; shifted to [-1, 1] they do not (SSIM's luminance term
    compares means), which is why make eval states it works on uint8 levels 0..255 with data_range 255."""
    x, y = _noise(3, 32, 7).float(), _noise(3, 32, 8).float()
    levels = ms_ssim(x, y, data_range=255.0)
    torch.testing.assert_close(ms_ssim(x / 255, y / 255, data_range=1.0), levels, rtol=1e-4, atol=1e-5)
    centred = ms_ssim(x / 127.5 - 1, y / 127.5 - 1, data_range=2.0)
    assert not torch.allclose(centred, levels, atol=1e-3)


@pytest.mark.parametrize("n,wanted", [(2, 1), (11, 1000), (100, 30), (1, 5), (0, 5)])
def test_pairs_are_disjoint_never_self_and_seeded(n, wanted):
    pairs = disjoint_pairs(n, wanted, seed=3)
    assert pairs.shape == (min(wanted, n // 2), 2) and pairs.dtype == torch.int64
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert len(torch.unique(pairs)) == pairs.numel()  # no image in two pairs
    assert ((pairs >= 0) & (pairs < max(n, 1))).all()
    assert torch.equal(pairs, disjoint_pairs(n, wanted, seed=3))
    if n >= 100:
        assert not torch.equal(pairs, disjoint_pairs(n, wanted, seed=4))


def test_the_pair_plan_pairs_within_each_class():
    labels = torch.tensor([0] * 9 + [1] * 4 + [2])
    plan = pair_plan(labels, 100, seed=0, per_class=True)
    assert sorted(plan, key=str) == sorted([None, 0, 1, 2], key=str)
    assert (
        plan[None].shape == (7, 2) and plan[0].shape == (4, 2) and plan[1].shape == (2, 2) and plan[2].shape == (0, 2)
    )
    for k in (0, 1):
        assert (labels[plan[k]] == k).all()
    assert list(pair_plan(labels, 100, seed=0, per_class=False)) == [None]


def test_the_tap_keeps_exactly_the_planned_images_and_passes_the_stream_through():
    images = _noise(50, 16, 9)
    labels = torch.arange(50) % 3
    plan = pair_plan(labels, 4, seed=1, per_class=True)
    rows, kept = plan_indices(plan), []
    passed = list(keeping((images[i : i + 7] for i in range(0, 50, 7)), rows, kept))
    assert torch.equal(torch.cat(passed), images)
    assert torch.equal(torch.cat(kept), images[rows])
    from_subset = plan_diversity(torch.cat(kept), plan, rows)
    from_all = plan_diversity(images, plan)
    assert from_subset == from_all and all(d.pairs == 4 for d in from_all.values())


def test_no_pairs_give_nan_not_an_error():
    result = pair_ms_ssim(torch.zeros(0, 1, 32, 32, dtype=torch.uint8), disjoint_pairs(1, 10, seed=0))
    assert result.pairs == 0 and result.mean != result.mean
