"""KID: the official subset estimator, checked against torchmetrics' MMD and on matched/unmatched sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import poly_mmd

from braingan.metrics.kid import kernel_inception_distance, mmd2_unbiased


def test_mmd_matches_an_explicit_double_sum():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 4)) + 0.5
    k = lambda u, v: (u @ v / 4 + 1) ** 3  # noqa: E731
    m = 6
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * cross / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_full_size_subsets_equal_torchmetrics_poly_mmd():
    """With subsets as large as the sets every draw is a permutation: mean = the full-set MMD, std 0."""
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((50, 32)), rng.standard_normal((50, 32)) * 1.2
    result = kernel_inception_distance(real, fake, num_subsets=5, max_subset_size=1000)
    expected = poly_mmd(torch.from_numpy(real), torch.from_numpy(fake)).item()
    assert result.mean == pytest.approx(expected, rel=1e-10)
    assert result.std == pytest.approx(0.0, abs=1e-12)


def test_kid_near_zero_for_matched_sets_and_positive_for_different_ones():
    """Independent draws of one distribution: ~0. A set against itself: slightly negative, since
    the official cross term keeps k(x, x) for points drawn into both subsets."""
    rng = np.random.default_rng(2)
    real = rng.standard_normal((400, 64))
    same = kernel_inception_distance(real, real, num_subsets=20, max_subset_size=200)
    fresh = kernel_inception_distance(real, rng.standard_normal((400, 64)), num_subsets=20, max_subset_size=200)
    shifted = kernel_inception_distance(real, rng.standard_normal((400, 64)) + 0.5, num_subsets=20, max_subset_size=200)
    assert shifted.mean > 0.01
    assert abs(fresh.mean) < 0.01 * shifted.mean
    assert -0.05 * shifted.mean < same.mean < 0
    assert shifted.std > 0


def test_kid_of_real_slices(slice_features):
    """Upper slices of one folder against lower slices of the other: clearly positive. A set
    against itself: slightly negative (the official estimator's cross term, see above)."""
    a, b = slice_features
    same = kernel_inception_distance(a, a)
    different = kernel_inception_distance(a[:20], b[20:])
    print(
        f"\nKID x 10^3: a vs a {1e3 * same.mean:.3f} +- {1e3 * same.std:.3f}, "
        f"a[:20] vs b[20:] {1e3 * different.mean:.3f} +- {1e3 * different.std:.3f}"
    )
    assert different.mean > 0 and -0.1 * different.mean < same.mean <= 0


def test_kid_is_seeded():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((30, 8)), rng.standard_normal((40, 8))
    first = kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=7)
    assert kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=7) == first
    assert kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=8) != first


def test_kid_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="features"):
        kernel_inception_distance(np.zeros((5, 4)), np.zeros((5, 3)))


def test_precomputed_kernels_give_the_per_subset_answer(monkeypatch):
    import braingan.metrics.kid as kid

    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((60, 16)), rng.standard_normal((50, 16)) + 0.3
    gram = kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=30)
    monkeypatch.setattr(kid, "GRAM_ROWS", 0)
    direct = kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=30)
    assert gram.mean == pytest.approx(direct.mean, rel=1e-10)
    assert gram.std == pytest.approx(direct.std, rel=1e-8)
