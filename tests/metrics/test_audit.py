"""Memorization audit on real slices: copies of training slices are flagged, new subjects are not.

Features here are 8x8 average-pooled pixels (the audit is agnostic to the feature extractor);
the Inception path is exercised by the `make audit` end-to-end test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from braingan.data.dataset import SliceDataset
from braingan.data.layouts import discover
from braingan.metrics.audit import data_copying_audit, nearest_correlation, nearest_cosine


def pooled(images: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(images.float(), 8).flatten(1)  # [N, 64]


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    """12 pseudo-subjects of the demo set at 64 px: 6 train, 3 held-out baseline, 3 'new'."""
    from braingan.data.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("audit") / "demo"
    build_demo_dataset(root, num_subjects=12, progress=False)
    data = SliceDataset(discover(root, "oasis"), 64, progress=False)
    images = torch.from_numpy(np.asarray(data.images)).float()  # [N, 1, 64, 64]
    subjects = np.array([r.subject for r in data.records])
    ids = sorted(set(subjects))
    group = {"train": ids[:6], "validate": ids[6:9], "test": ids[9:]}
    rows = {k: np.nonzero(np.isin(subjects, v))[0] for k, v in group.items()}
    return {
        "train": images[rows["train"]],
        "train_subjects": list(subjects[rows["train"]]),
        "validate": images[rows["validate"]],
        "test": images[rows["test"]],
    }


def run(generated: torch.Tensor, s: dict):
    return data_copying_audit(
        pooled(generated),
        pooled(s["train"]),
        pooled(s["validate"]),
        generated,
        s["train"],
        s["validate"],
        s["train_subjects"],
    )


def test_a_generator_that_returns_training_slices_is_flagged(slices) -> None:
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(slices["train"]), generator=g)[:40]
    copies = (slices["train"][pick] + torch.randn(40, 1, 64, 64, generator=g)).clamp(0, 255)
    result = run(copies, slices)
    assert result.near_copy_fraction >= 0.95
    assert np.array_equal(result.gen_nearest, pick.numpy())  # each copy finds its original
    assert sum(result.copies_per_subject.values()) == int(result.near_copy.sum())
    assert set(result.copies_per_subject) <= set(slices["train_subjects"])


def test_a_generator_that_returns_new_subjects_is_not_flagged(slices) -> None:
    result = run(slices["test"], slices)  # subjects neither trained on nor in the baseline
    print("new-subject near-copy fraction", result.near_copy_fraction, "baseline", result.heldout_fraction)
    assert result.near_copy_fraction <= 0.1
    assert result.heldout_fraction <= 0.02  # the baseline against its own 99th percentile
    summary = result.summary()
    assert summary["num_generated"] == len(slices["test"])
    assert 0 <= summary["near_copy_fraction"] <= 0.1


def test_nearest_neighbours_against_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(7, 5, generator=g), torch.randn(11, 5, generator=g)
    sim, idx = nearest_cosine(q, r)
    brute = F.cosine_similarity(q[:, None], r[None], dim=2)  # [7, 11]
    assert torch.allclose(sim, brute.max(1).values, atol=1e-6) and torch.equal(idx, brute.argmax(1))
    qi, ri = torch.rand(4, 1, 3, 3, generator=g), torch.rand(6, 1, 3, 3, generator=g)
    corr, cidx = nearest_correlation(qi, ri)
    expected = np.array([[np.corrcoef(a.flatten(), b.flatten())[0, 1] for b in ri.numpy()] for a in qi.numpy()])
    assert np.allclose(corr.numpy(), expected.max(1), atol=1e-6)
    assert np.array_equal(cidx.numpy(), expected.argmax(1))
    assert torch.allclose(nearest_correlation(qi * 3 + 7, qi)[0], torch.ones(4), atol=1e-6)  # affine copy
