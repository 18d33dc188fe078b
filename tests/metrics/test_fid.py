"""Frechet distance against closed forms computed independently, and FID of a set against itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braingan.metrics.fid import FeatureStats, fid_from_features, fid_from_stats, frechet_distance

METHODS = ["factored", "sqrtm"]


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("method", METHODS)
def test_diagonal_gaussians_match_closed_form(method):
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    s1, s2 = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2), method=method) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_commuting_full_covariances_match_closed_form(method):
    """S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T share eigenvectors: tr (S1 S2)^(1/2) = sum sqrt(a b)."""
    rng = np.random.default_rng(2)
    q = random_rotation(32, rng)
    a, b = rng.uniform(0.05, 4.0, 32), rng.uniform(0.05, 4.0, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, method=method)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_non_commuting_2x2_matches_closed_form(method):
    """For 2 x 2 PSD S1, S2: tr (S1 S2)^(1/2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2))."""
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    mu1, mu2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-12)


def test_all_routes_agree_on_rank_deficient_covariances():
    """Fewer samples than dimensions (as with a few hundred images at 2048-d): the sample-space
    route of fid_from_features, the factored [D, D] route and scipy's sqrtm agree."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 256))
    b = 0.8 * rng.standard_normal((30, 256)) + 0.2
    samples = fid_from_features(a, b)
    sa, sb = FeatureStats.from_features(a), FeatureStats.from_features(b)
    assert fid_from_stats(sa, sb, method="factored") == pytest.approx(samples, rel=1e-9)
    assert fid_from_stats(sa, sb, method="sqrtm") == pytest.approx(samples, rel=1e-6)
    assert abs(fid_from_stats(sa, sa, method="factored")) < 1e-9


def test_feature_stats_are_unbiased_mean_and_cov():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    stats = FeatureStats.from_features(torch.from_numpy(x))
    assert stats.num == 50 and stats.mean.dtype == np.float64 and stats.cov.dtype == np.float64
    np.testing.assert_allclose(stats.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


def test_fid_of_random_features_against_themselves_is_zero():
    x = np.random.default_rng(5).standard_normal((300, 64))  # N > D: the [D, D] route
    assert abs(fid_from_features(x, x)) < 1e-6
    stats = FeatureStats.from_features(x)
    assert abs(fid_from_stats(stats, stats)) < 1e-6


def test_fid_of_real_slices_against_themselves_is_zero(slice_features):
    """40 Inception features, 2048-d: the covariance has rank 39, still exactly 0 up to round-off."""
    a, b = slice_features
    assert abs(fid_from_features(a, a)) < 1e-6
    assert fid_from_features(a, b) > 1.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="method"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")
    with pytest.raises(ValueError, match="N >= 2"):
        FeatureStats.from_features(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="N, M >= 2"):
        fid_from_features(np.zeros((3, 4)), np.zeros((3, 5)))


def test_constant_features_reduce_to_the_mean_term():
    """Zero covariances (every feature vector equal): FID is ||mu1 - mu2||^2."""
    a, b = np.full((5, 6), 1.0), np.full((7, 6), 3.0)
    assert fid_from_features(a, b) == pytest.approx(6 * 4.0, abs=1e-12)
