"""Density and coverage (Naeem et al. 2020) against a plain double loop, and the closed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from braingan.metrics.density_coverage import density_coverage


def _reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The paper's definitions, written out with loops over points and true (not squared) distances."""
    n, m = len(real), len(fake)
    radius = []
    for i in range(n):
        others = sorted(math.dist(real[i], real[j]) for j in range(n) if j != i)
        radius.append(others[k - 1])  # distance to the k-th nearest other real point
    inside = 0  # sum over fakes of the number of real balls holding it
    covered = 0  # real points whose ball holds some fake
    for i in range(n):
        hit = False
        for j in range(m):
            if math.dist(fake[j], real[i]) < radius[i]:  # the official code's strict <
                inside += 1
                hit = True
        covered += hit
    return inside / (k * m), covered / n


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_a_brute_force_double_loop(k):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((40, 6))
    fake = rng.standard_normal((33, 6)) * 1.2 + 0.3  # overlapping but not the same distribution
    expected = _reference(real, fake, k)
    assert 0 < expected[1] < 1 and expected[0] > 0  # a case where neither value is trivial
    got = density_coverage(real, fake, k=k, block_rows=7)  # blocks that do not divide N
    assert got.density == pytest.approx(expected[0], abs=1e-12)
    assert got.coverage == pytest.approx(expected[1], abs=1e-12)


def test_identical_sets_cover_everything():
    x = np.random.default_rng(10).standard_normal((60, 16))
    result = density_coverage(x, x, k=5)
    assert result.coverage == 1.0  # every real point has itself (distance 0) inside its ball
    assert result.density == pytest.approx(_reference(x, x, 5)[0], abs=1e-12)
    assert result.density >= 1 / 5  # each fake lies at least in its own real ball


def test_far_away_fakes_have_zero_density_and_coverage():
    rng = np.random.default_rng(11)
    real, fake = rng.standard_normal((50, 16)), rng.standard_normal((30, 16)) + 100.0
    assert density_coverage(real, fake) == (0.0, 0.0)


def test_fakes_crowding_one_real_point_have_low_coverage_but_density():
    real = np.random.default_rng(12).standard_normal((50, 8))
    fake = real[:1] + 1e-6 * np.random.default_rng(13).standard_normal((40, 8))  # a collapsed mode
    result = density_coverage(real, fake, k=5)
    assert result.coverage <= 10 / 50  # only balls around that point (and a few neighbours) are hit
    assert result.density > 0


def test_float32_and_tensors_agree_with_float64():
    rng = np.random.default_rng(14)
    real, fake = rng.standard_normal((80, 32)), rng.standard_normal((70, 32)) * 1.1
    reference = density_coverage(real, fake, k=5)
    got = density_coverage(torch.from_numpy(real).float(), torch.from_numpy(fake).float(), k=5, dtype=torch.float32)
    assert got.density == pytest.approx(reference.density, abs=2 / (5 * 70))
    assert got.coverage == pytest.approx(reference.coverage, abs=2 / 80)


def test_too_few_real_points_are_refused():
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match="more than 5 points"):
        density_coverage(x, x, k=5)
