"""metrics/utility.py: the train-on-X, test-on-real classifier, on a synthetic AD/NC set whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from braingan.metrics.utility import UtilityOptions, predict, scores, train_classifier
from helpers.mri import template_slice

R = 16  # the classifier's smallest size: the tests stay fast


def slices(indices, darkened: bool) -> torch.Tensor:
    """uint8 [N, 1, R, R] template slices; `darkened`: the centre (a disk of a quarter of the side) at 40 %."""
    yy, xx = np.mgrid[:R, :R]
    centre = (yy - R / 2 + 0.5) ** 2 + (xx - R / 2 + 0.5) ** 2 <= (R / 4) ** 2
    out = []
    for k in indices:
        image = np.asarray(Image.fromarray(template_slice(k)).resize((R, R), Image.Resampling.BILINEAR), np.float64)
        if darkened:
            image = np.where(centre, image * 0.4, image)
        out.append(np.rint(image).astype(np.uint8))
    return torch.from_numpy(np.stack(out))[:, None]


@pytest.fixture(scope="module")
def ad_nc():
    """AD (darkened centre) and NC from the same 40 template slices: train on 28 of them, test on the other 12."""
    train_idx = [k for k in range(40) if k % 10 not in (3, 6, 9)]
    test_idx = [k for k in range(40) if k % 10 in (3, 6, 9)]
    x_train = torch.cat([slices(train_idx, True), slices(train_idx, False)])
    y_train = torch.tensor([0] * len(train_idx) + [1] * len(train_idx))
    x_test = torch.cat([slices(test_idx, True), slices(test_idx, False)])
    y_test = torch.tensor([0] * len(test_idx) + [1] * len(test_idx))
    return x_train, y_train, x_test, y_test


OPT = UtilityOptions(steps=100, batch=32, width=8)


def test_a_separable_set_is_learned_and_a_shuffled_one_is_at_chance(ad_nc):
    x_train, y_train, x_test, y_test = ad_nc
    learned = scores(predict(train_classifier(x_train, y_train, 2, OPT), x_test), y_test)
    assert learned["accuracy"] > 0.9 and learned["balanced_accuracy"] > 0.9 and learned["auc"] > 0.95, learned
    # Shuffled labels: a random label per template slice, the same for its AD and its NC version (half of
    # the slices each), so they say nothing about the centre's brightness. One such classifier still reacts
    # to brightness in some random direction, and the test classes differ only in it: any one shuffle lands
    # anywhere between 0 and 1; over shuffles the scores centre on chance.
    n = len(y_train) // 2
    balanced = []
    for seed in range(6):
        per_slice = (torch.arange(n) % 2)[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
        shuffled = torch.cat([per_slice, per_slice])
        balanced.append(
            scores(predict(train_classifier(x_train, shuffled, 2, OPT), x_test), y_test)["balanced_accuracy"]
        )
    assert 0.35 < float(np.mean(balanced)) < 0.65, balanced


def test_training_is_seeded_and_leaves_the_callers_random_state_alone(ad_nc):
    x_train, y_train, x_test, _ = ad_nc
    state = torch.get_rng_state()
    a = predict(train_classifier(x_train, y_train, 2, UtilityOptions(steps=5, width=4)), x_test)
    assert torch.equal(torch.get_rng_state(), state)
    b = predict(train_classifier(x_train, y_train, 2, UtilityOptions(steps=5, width=4)), x_test)
    c = predict(train_classifier(x_train, y_train, 2, UtilityOptions(steps=5, width=4, seed=1)), x_test)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_scores_against_hand_computed_values():
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    y = torch.tensor([0, 1, 1, 1, 0])
    s = scores(p, y)
    assert s["accuracy"] == pytest.approx(4 / 5)
    assert s["balanced_accuracy"] == pytest.approx((1.0 + 2 / 3) / 2)
    # AUC: of the 2 x 3 (negative, positive) pairs, positive scored higher in all 6 (0.4 > 0.1 and 0.3, ...)
    assert s["auc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two classes or more"):
        train_classifier(torch.zeros(4, 1, 16, 16, dtype=torch.uint8), torch.zeros(4), 2)
