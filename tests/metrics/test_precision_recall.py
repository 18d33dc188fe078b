"""Improved precision/recall: k-NN radii against brute force, and the three textbook cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braingan.metrics.precision_recall import knn_sq_radii, pairwise_sq_distances, precision_recall


def test_knn_radii_match_brute_force():
    x = np.random.default_rng(0).standard_normal((60, 16))
    full = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # [60, 60], 0 on the diagonal
    expected = np.sort(full, axis=1)[:, 3]  # 3rd neighbour after self
    got = knn_sq_radii(torch.from_numpy(x), k=3, block_rows=7).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_pairwise_distances_are_never_negative():
    x = torch.randn(20, 2048, dtype=torch.float32) * 100
    assert (pairwise_sq_distances(x, x) >= 0).all()


def test_identical_sets_give_full_precision_and_recall():
    x = np.random.default_rng(1).standard_normal((100, 64))
    assert precision_recall(x, x) == (1.0, 1.0)


def test_far_apart_clusters_give_zero_precision_and_recall():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((100, 64)), rng.standard_normal((80, 64)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_a_subset_is_precise_but_does_not_recall_everything():
    real = np.random.default_rng(3).standard_normal((200, 64))
    result = precision_recall(real, real[:30])
    assert result.precision == 1.0
    assert result.recall < 0.9


def test_blocking_and_precision_do_not_change_the_answer():
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((150, 32)), rng.standard_normal((120, 32)) * 1.3 + 0.2
    reference = precision_recall(real, fake)
    assert 0 < reference.precision < 1 and 0 < reference.recall < 1
    assert precision_recall(real, fake, block_rows=16) == reference
    assert precision_recall(torch.from_numpy(real).float(), fake, dtype=torch.float32) == pytest.approx(
        reference, abs=1 / 120
    )


def test_real_slice_features(slice_features):
    a, b = slice_features
    assert precision_recall(a, a) == (1.0, 1.0)
    result = precision_recall(a, b)
    print(f"\nprecision/recall a vs b: {result.precision:.3f} / {result.recall:.3f}")
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1
