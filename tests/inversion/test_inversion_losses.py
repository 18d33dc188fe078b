"""The projector's losses against values computed independently (numpy, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braingan.inversion import losses
from braingan.inversion.projector import ProjectOptions, learning_rate


def test_pixel_losses_match_numpy_per_image_and_under_a_mask():
    x, y = torch.rand(3, 1, 8, 8) * 2 - 1, torch.rand(3, 1, 8, 8) * 2 - 1
    a, b = x.numpy(), y.numpy()
    np.testing.assert_allclose(losses.pixel_loss(x, y, "l2"), ((a - b) ** 2).reshape(3, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(losses.pixel_loss(x, y, "l1"), np.abs(a - b).reshape(3, -1).mean(1), rtol=1e-5)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:7] = 1
    expected = ((a - b) ** 2)[:, :, 2:6, 1:7].reshape(3, -1).mean(1)
    np.testing.assert_allclose(losses.pixel_loss(x, y, "l2", mask), expected, rtol=1e-5)
    with pytest.raises(ValueError):
        losses.pixel_loss(x, y, "l3")


@pytest.mark.parametrize("size", [32, 64, 256])
def test_ms_ssim_of_constant_images_is_the_luminance_term_alone(size):
    # Constant images have no variance: every contrast-structure term is (0 + C2) / (0 + C2) = 1, and the
    # luminance term is (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * data range 2)^2, raised to the coarsest
    # scale's normalized weight.
    a, b = 0.5, 0.2
    x, y = torch.full((2, 1, size, size), a), torch.full((2, 1, size, size), b)
    scales, _ = losses.ms_ssim_scales(size)
    betas = np.asarray(losses.MS_SSIM_BETAS[:scales])
    c1 = (0.01 * 2) ** 2
    expected = 1 - ((2 * a * b + c1) / (a * a + b * b + c1)) ** (betas[-1] / betas.sum())
    np.testing.assert_allclose(losses.ms_ssim_loss(x, y).numpy(), [expected, expected], rtol=1e-4)
    assert losses.ms_ssim_loss(x, x).abs().max() < 1e-5


def test_ms_ssim_is_per_image_and_orders_degradations():
    torch.manual_seed(0)
    clean = torch.rand(1, 1, 64, 64) * 2 - 1
    slight, strong = clean + 0.05 * torch.randn_like(clean), clean + 0.5 * torch.randn_like(clean)
    batch = losses.ms_ssim_loss(torch.cat([slight, strong]), clean.expand(2, -1, -1, -1))
    alone = torch.cat([losses.ms_ssim_loss(slight, clean), losses.ms_ssim_loss(strong, clean)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    assert 0 < batch[0] < batch[1]
    assert losses.ms_ssim_scales(256) == (5, 11) and losses.ms_ssim_scales(32)[0] >= 2


def test_noise_regularization_is_high_for_smooth_maps_and_near_zero_for_white_noise():
    # A constant map c correlates perfectly with its shifts: c^2 squared, twice, per scale. Halving doubles c
    # (2 x 2 means times 2, which keeps white noise unit): at 32, 16 and 8 pixels c = 1, 2, 4.
    ones = [torch.ones(2, 1, 32, 32), torch.ones(2, 1, 8, 8)]
    torch.testing.assert_close(losses.noise_regularization(ones), torch.full((2,), 2 * (1 + 16 + 256) + 2.0))
    # White unit noise: each mean of r^2 products has variance 1 / r^2, so a squared term is about 1 / r^2.
    torch.manual_seed(0)
    white = [torch.randn(2, 1, 256, 256)]
    assert losses.noise_regularization(white).max() < 10 * 2 * sum(1 / r**2 for r in (256, 128, 64, 32, 16, 8))
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 64, 64), 5, stride=1, padding=2)
    mixed = [torch.cat([smooth / smooth.std(), torch.randn(1, 1, 64, 64)])]
    penalty = losses.noise_regularization(mixed)
    assert penalty[0] > 50 * penalty[1], penalty  # per image: the smooth one pays, the white one does not


def test_normalize_noise_gives_zero_mean_unit_variance_per_image():
    maps = [torch.randn(3, 1, 16, 16) * 4 + 2]
    losses.normalize_noise(maps)
    torch.testing.assert_close(maps[0].mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0].std(dim=(1, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


def test_feature_loss_averages_each_layer_and_sums_the_layers():
    fx = [torch.ones(2, 4, 8, 8), torch.zeros(2, 8, 2, 2)]
    fy = [torch.zeros(2, 4, 8, 8), torch.full((2, 8, 2, 2), 3.0)]
    torch.testing.assert_close(losses.feature_loss(fx, fy), torch.full((2,), 1.0 + 9.0))


def test_learning_rate_ramps_up_then_down_by_a_cosine():
    opt = ProjectOptions(steps=100, lr=0.1)
    assert learning_rate(opt, 0) == 0.0
    assert learning_rate(opt, 2) == pytest.approx(0.1 * 2 / 5)  # linear over the first 5 %
    assert learning_rate(opt, 50) == pytest.approx(0.1)
    assert learning_rate(opt, 90) == pytest.approx(0.1 * (0.5 - 0.5 * np.cos(np.pi * 0.4)))  # (1 - t) / 0.25
