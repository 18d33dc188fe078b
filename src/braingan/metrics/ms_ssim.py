"""MS-SSIM (torchmetrics) on small images, and the diversity statistic built on it.

MS-SSIM (Wang, Simoncelli and Bovik 2003) compares two images at up to five scales, halving them
2 x 2 between scales. torchmetrics' `multiscale_structural_similarity_index_measure` computes it
with a Gaussian window; `normalize="relu"` (its default) clamps each scale's term at 0, so a
value lies in [0, 1] (1 = identical) and never NaN from a negative base. 32 x 32 and 64 x 64
slices are too small for the standard five scales with an 11 x 11 window: `ms_ssim_scales` picks
what the size allows.

Diversity (Odena et al. 2017, AC-GAN): the mean MS-SSIM over random pairs of distinct images of
one set. Generated images that look alike (mode collapse) score higher than the real set does.
Pairs are disjoint (each image in at most one pair) and drawn from a seeded permutation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

# MS-SSIM's scale weights (Wang, Simoncelli and Bovik 2003), finest first; fewer scales are renormalized.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
UINT8_RANGE = 255.0  # data_range of uint8 images (levels 0..255); images in [-1, 1] have 2.0


def ms_ssim_fits(size: int, scales: int, kernel: int) -> bool:
    """Whether MS-SSIM with `scales` scales and a `kernel`-wide window runs on size x size images.

    torchmetrics 1.x (functional/image/ssim.py, `_multiscale_ssim_update`) refuses unless
    size >= 2^scales and size // max(1, scales - 1)^2 > kernel - 1. Beyond that, the coarsest image,
    size // 2^(scales - 1), must be wider than kernel - 1: each scale's contrast term is averaged over
    the window's valid positions, and the coarsest scale's reflection padding must fit in it.
    """
    return size >= 2**scales and size // max(1, scales - 1) ** 2 > kernel - 1 and size // 2 ** (scales - 1) > kernel - 1


def ms_ssim_scales(size: int, kernel_size: int = 11) -> tuple[int, int]:
    """(scales, kernel size) for MS-SSIM on size x size images: up to 5 scales that `ms_ssim_fits` allows;
    the kernel shrinks (odd, >= 3) before the scales drop below 2. 32 px: (2, 11); 64: (3, 11); 256: (5, 11)."""
    for kernel in range(kernel_size, 2, -2):
        for scales in range(len(MS_SSIM_BETAS), 1, -1):
            if ms_ssim_fits(size, scales, kernel):
                return scales, kernel
    return 1, 3


def ms_ssim_sigma(kernel_size: int) -> float:
    """The Gaussian's sigma for a window: 1.5 at 11 (the standard), in proportion below.

    torchmetrics sizes its Gaussian window from sigma (2 * int(3.5 sigma + 0.5) + 1 taps), which gives
    back `kernel_size` for every odd size from 3 to 11."""
    return 1.5 * kernel_size / 11


def ms_ssim(
    x: torch.Tensor,  # [N, C, H, W], float (or uint8 with data_range=255)
    y: torch.Tensor,  # [N, C, H, W], the same type
    data_range: float,  # max - min of the pixel scale: 255 for uint8 levels, 2 for [-1, 1]
    scales: int | None = None,  # None = as many as the size allows (ms_ssim_scales)
    kernel_size: int | None = None,  # Gaussian window side; None = with the scales
) -> torch.Tensor:  # [N] in [0, 1], 1 for identical images
    """MS-SSIM of each pair (x[i], y[i]) (torchmetrics, relu-normalized, betas renormalized to the scales)."""
    auto_scales, auto_kernel = ms_ssim_scales(min(x.shape[-2:]))
    scales, kernel_size = scales or auto_scales, kernel_size or auto_kernel
    total = sum(MS_SSIM_BETAS[:scales])
    betas = tuple(b / total for b in MS_SSIM_BETAS[:scales])
    value = multiscale_structural_similarity_index_measure(
        x.float(),
        y.float(),
        kernel_size=kernel_size,
        sigma=ms_ssim_sigma(kernel_size),
        data_range=data_range,
        betas=betas,
        reduction="none",
        normalize="relu",  # each scale's term clamped at 0: values in [0, 1], no NaN from a negative base
    )
    return value.reshape(len(x))


def disjoint_pairs(
    n: int,  # images in the set
    num_pairs: int,  # pairs wanted; at most n // 2 are drawn
    seed: int,
) -> torch.Tensor:  # int64 [P, 2], P = min(num_pairs, n // 2); every index at most once
    """Seeded random pairs of distinct images, no image in two pairs (consecutive entries of a permutation)."""
    count = max(0, min(num_pairs, n // 2))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: 2 * count].reshape(count, 2)


class Diversity(NamedTuple):
    mean: float  # mean MS-SSIM over the pairs, [0, 1]; NaN without pairs
    std: float  # its standard deviation over the pairs
    pairs: int  # pairs it averages


def pair_ms_ssim(
    images: torch.Tensor,  # uint8 [N, C, H, W]
    pairs: torch.Tensor,  # int64 [P, 2] rows into images
    batch_size: int = 256,  # pairs per torchmetrics call
    device: torch.device | str | None = None,  # None: where the images are
) -> Diversity:
    """Mean MS-SSIM of images[pairs[:, 0]] against images[pairs[:, 1]] (uint8 levels, data_range 255)."""
    if len(pairs) == 0:
        return Diversity(float("nan"), float("nan"), 0)
    values = []
    for start in range(0, len(pairs), batch_size):
        block = pairs[start : start + batch_size]
        a, b = images[block[:, 0]].to(device), images[block[:, 1]].to(device)
        values.append(ms_ssim(a, b, data_range=UINT8_RANGE).double().cpu())
    v = torch.cat(values)
    return Diversity(float(v.mean()), float(v.std(unbiased=False)), len(v))


def pair_plan(
    labels: torch.Tensor,  # [N] class of each image (zeros when unconditional)
    num_pairs: int,  # pairs per set at most
    seed: int,
    per_class: bool,  # also pairs within each class
) -> dict[int | None, torch.Tensor]:  # None: pairs over the whole set; k: within class k; [P, 2] indices
    """The pairs of one labelled set: over all images, and within each class (seeded apart)."""
    plan: dict[int | None, torch.Tensor] = {None: disjoint_pairs(len(labels), num_pairs, seed)}
    if per_class:
        for k in torch.unique(labels).tolist():
            members = torch.nonzero(labels == k).flatten()
            plan[int(k)] = members[disjoint_pairs(len(members), num_pairs, seed + 1 + int(k))]
    return plan


def plan_diversity(
    images: torch.Tensor,  # uint8 [N, C, H, W] (or the kept subset, with `rows` mapping indices into it)
    plan: dict[int | None, torch.Tensor],  # pair_plan's pairs, indices of the full set
    rows: torch.Tensor | None = None,  # sorted indices of the full set that `images` holds; None: all
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[int | None, Diversity]:
    """pair_ms_ssim for every entry of a plan."""
    out = {}
    for key, pairs in plan.items():
        local = pairs if rows is None else torch.searchsorted(rows, pairs)
        out[key] = pair_ms_ssim(images, local, batch_size, device)
    return out


def plan_indices(plan: dict[int | None, torch.Tensor]) -> torch.Tensor:
    """Sorted unique indices a plan's pairs use: the images to keep while streaming a set."""
    used = [p.flatten() for p in plan.values() if len(p)]
    return torch.unique(torch.cat(used)) if used else torch.zeros(0, dtype=torch.int64)
