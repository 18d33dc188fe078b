"""The projector's losses, as small pure functions of image batches; each returns one value per image [N].

Every loss is per image, so a batch of N projections summed into one scalar keeps each image's
gradient independent of the others (Adam's updates are elementwise). Images are float in [-1, 1].

    pixel_loss              mean squared (l2) or absolute (l1) difference, optionally over a mask
    ms_ssim_loss            1 - MS-SSIM (torchmetrics, no weights); as many scales as the size allows
    feature_loss            mean squared difference of feature maps, averaged per layer, summed
    discriminator_features  the activations after each of D's blocks (the image side of D only)
    inception_features      the shipped Inception-v3's pool features, differentiable
    noise_regularization    the StyleGAN2 paper's multi-scale autocorrelation penalty of noise maps
    normalize_noise         noise maps back to zero mean and unit variance (after each step)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

# MS-SSIM and its scale choice have one home, metrics/ms_ssim.py (make eval's diversity uses them too).
from ..metrics.ms_ssim import MS_SSIM_BETAS as MS_SSIM_BETAS
from ..metrics.ms_ssim import ms_ssim
from ..metrics.ms_ssim import ms_ssim_scales as ms_ssim_scales

NOISE_MIN_SIZE = 8  # the autocorrelation penalty stops at 8 x 8 maps (StyleGAN2, appendix D)


def pixel_loss(
    x: torch.Tensor,  # [N, C, H, W]
    y: torch.Tensor,  # [N, C, H, W]
    kind: str = "l2",  # l2 (mean squared) | l1 (mean absolute)
    mask: torch.Tensor | None = None,  # [N or 1, 1, H, W] weights (1 = counts); None = every pixel
) -> torch.Tensor:  # [N]
    diff = (x - y).square() if kind == "l2" else (x - y).abs() if kind == "l1" else None
    if diff is None:
        raise ValueError(f"pixel loss kind={kind!r} must be l2 or l1")
    if mask is None:
        return diff.flatten(1).mean(dim=1)
    weights = mask.expand_as(diff)
    return (diff * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp_min(1e-8)


def ms_ssim_loss(
    x: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    y: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    scales: int | None = None,  # None = as many as the size allows (metrics.ms_ssim.ms_ssim_scales)
    kernel_size: int | None = None,  # Gaussian window side; None = with the scales
) -> torch.Tensor:  # [N], 0 for identical images
    return 1.0 - ms_ssim(x, y, data_range=2.0, scales=scales, kernel_size=kernel_size)


def feature_loss(
    fx: Sequence[torch.Tensor],  # per layer [N, ...]
    fy: Sequence[torch.Tensor],  # per layer [N, ...], the target's
) -> torch.Tensor:  # [N]: per layer mean squared difference, summed over layers
    return torch.stack([(a.float() - b.float()).square().flatten(1).mean(dim=1) for a, b in zip(fx, fy)]).sum(dim=0)


def discriminator_features(
    D: torch.nn.Module,  # braingan.nn.discriminator.Discriminator
    img: torch.Tensor,  # [N, C, R, R] in [-1, 1]
) -> list[torch.Tensor]:  # per block [N, C_b, R_b, R_b]
    """D's activations after each block. The epilogue (its minibatch std mixes images) is left out."""
    features, x = [], img
    for block in cast(nn.ModuleList, D.blocks):
        x = block(x)
        features.append(x)
    return features


def inception_features(
    net: torch.nn.Module,  # braingan.metrics.inception.InceptionFeatures
    img: torch.Tensor,  # [N, C, H, W] in [-1, 1], C = 1 or 3
) -> torch.Tensor:  # [N, num_features]
    """The extractor's features with gradients: the preprocessing of the uint8 path on unrounded levels."""
    from ..metrics.inception import ieee_fp32, levels_to_inception_input

    x = levels_to_inception_input((img.float() * 127.5 + 128).clamp(0, 255))  # utils.images.to_uint8's scale
    with ieee_fp32(x.device):
        features = cast(nn.Module, net.net)(x)
    return features.flatten(2).mean(dim=2) if features.ndim > 2 else features


def noise_regularization(
    noises: Sequence[torch.Tensor],  # per layer [N, 1, r, r]
) -> torch.Tensor:  # [N]
    """Sum over maps and scales of the squared mean autocorrelation at a one-pixel shift, across and down.

    A map is halved by 2 x 2 averaging (times 2, which keeps unit Gaussian noise unit) until it is
    8 x 8; at each scale both shifts wrap around the edges. Unit Gaussian white noise scores about
    0 (in expectation 2 / r^2 per term); an image smuggled into the noise scores high.
    """
    total = torch.zeros(len(noises[0]), device=noises[0].device)
    for noise in noises:
        n = noise.float()
        while True:
            across = (n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3))
            down = (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3))
            total = total + across.square() + down.square()
            if n.shape[-1] <= NOISE_MIN_SIZE:
                break
            n = F.avg_pool2d(n, kernel_size=2) * 2
    return total


@torch.no_grad()
def normalize_noise(noises: Sequence[torch.Tensor]) -> None:
    """Each map of each image to zero mean and unit variance, in place (the pull toward unit Gaussian)."""
    for noise in noises:
        mean = noise.mean(dim=(1, 2, 3), keepdim=True)
        std = noise.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        noise.sub_(mean).div_(std)
