"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

    k(x, y) = (x . y / D + 1)^3

averaged over random subsets as the official code does (StyleGAN2-ADA metrics): `num_subsets`
draws of m = min(len(real), len(fake), max_subset_size) rows from each set without replacement.
Per subset, the within-set kernel sums leave out the diagonal (divided by m (m - 1)) and the
cross term keeps it (divided by m^2). Unlike FID, KID is unbiased in the sample count; it can be
slightly negative when the sets match. Papers report it x 10^3: the caller scales.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from braingan.metrics.fid import as_float64

GRAM_ROWS = 4096  # up to N + M rows, kernel matrices are computed once for all subsets


class KIDResult(NamedTuple):
    mean: float  # KID: mean MMD^2 over the subsets
    std: float  # standard deviation over the subsets (ddof 0, as torchmetrics)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3) -> np.ndarray:
    """(x . y / D + 1)^degree, [N, M] for x [N, D], y [M, D]."""
    return (x @ y.T / x.shape[1] + 1) ** degree


def mmd2_from_kernels(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The official KID estimate of one subset pair from its kernel matrices, each [m, m]."""
    m = k_xx.shape[0]
    within = k_xx.sum() + k_yy.sum() - np.trace(k_xx) - np.trace(k_yy)
    return float((within / (m - 1) - k_xy.sum() * 2 / m) / m)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The official KID estimate of one subset pair, x and y both [m, D]."""
    return mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def kernel_inception_distance(
    real,  # [N, D] features of the real set (array or tensor)
    fake,  # [M, D] features of the generated set
    num_subsets: int = 100,  # subset draws averaged
    max_subset_size: int = 1000,  # rows per subset at most
    seed: int = 0,  # seeds the subset draws
) -> KIDResult:
    """KID mean and std over subsets, in float64 (unscaled; report x 10^3).

    Small sets (N + M <= GRAM_ROWS) compute the three kernel matrices once and index them per
    subset; larger ones compute each subset's kernels afresh.
    """
    real, fake = as_float64(real), as_float64(fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need features [N, D] and [M, D], got {real.shape} and {fake.shape}")
    m = min(real.shape[0], fake.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {real.shape[0]} and {fake.shape[0]}")
    gram = real.shape[0] + fake.shape[0] <= GRAM_ROWS
    if gram:
        k_ff, k_rr, k_fr = polynomial_kernel(fake, fake), polynomial_kernel(real, real), polynomial_kernel(fake, real)
    rng = np.random.default_rng(seed)
    scores = np.empty(num_subsets)
    for i in range(num_subsets):
        ix = rng.choice(fake.shape[0], m, replace=False)  # generated rows
        iy = rng.choice(real.shape[0], m, replace=False)  # real rows
        if gram:
            scores[i] = mmd2_from_kernels(k_ff[np.ix_(ix, ix)], k_rr[np.ix_(iy, iy)], k_fr[np.ix_(ix, iy)])
        else:
            scores[i] = mmd2_unbiased(fake[ix], real[iy])
    return KIDResult(mean=float(scores.mean()), std=float(scores.std()))
