import math

import torch

from braingan.training import losses
from braingan.training.ema import ema_beta, update_ema


def test_r1_penalty_equals_analytic_gradient_norm():
    # D(x) = sum(a * x) + 0.5 * sum(x^2)  ->  dD/dx = a + x, penalty = |a + x|^2 per sample.
    a = torch.randn(1, 2, 4, 4)
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    logits = (a * x).sum(dim=[1, 2, 3]) + 0.5 * x.square().sum(dim=[1, 2, 3])
    pen = losses.d_r1_penalty(logits, x)
    expected = (a + x.detach()).square().sum(dim=[1, 2, 3])
    assert torch.allclose(pen, expected, atol=1e-5)
    # The penalty back-propagates (create_graph): d/dx |a + x|^2 = 2 (a + x).
    (g,) = torch.autograd.grad(pen.sum(), x)
    assert torch.allclose(g, 2 * (a + x.detach()), atol=1e-5)


def test_logistic_losses_have_the_right_sign_and_values():
    real, fake = torch.tensor([5.0, 4.0]), torch.tensor([-5.0, -4.0])
    good_d = losses.d_logistic_loss(real, fake)
    bad_d = losses.d_logistic_loss(fake, real)
    assert good_d < bad_d
    assert torch.isclose(losses.d_logistic_loss(torch.zeros(2), torch.zeros(2)), torch.tensor(2 * math.log(2)))
    # G's loss falls as D believes the fakes more.
    assert losses.g_nonsaturating_loss(torch.tensor([3.0])) < losses.g_nonsaturating_loss(torch.tensor([-3.0]))
    assert torch.isclose(losses.g_nonsaturating_loss(torch.zeros(1)), torch.tensor(math.log(2)))


def test_path_length_of_linear_generator_and_running_mean():
    # img = ws[:, 0] @ M reshaped: J^T y has norm |M y|, expectation known for y ~ N(0, I/HW).
    torch.manual_seed(0)
    n, w_dim, h = 64, 8, 4
    M = torch.randn(w_dim, h * h) * 3
    ws = torch.randn(n, 2, w_dim, requires_grad=True)
    img = (ws.mean(dim=1) @ M).reshape(n, 1, h, h)
    lengths = losses.g_path_lengths(img, ws)
    assert lengths.shape == (n,) and torch.isfinite(lengths).all()
    # For 2 ws averaged: grad per w is 0.5 M y; length = sqrt(mean over ws |0.5 M y|^2) = 0.5 |M y|.
    expected = 0.5 * torch.sqrt(M.square().sum() / (h * h))  # E|M y|^2 = ||M||_F^2 / (HW)
    assert abs(lengths.square().mean().sqrt() - expected) / expected < 0.2
    pl_mean = torch.zeros([])
    pen, new_mean = losses.g_path_length_penalty(lengths, pl_mean, decay=0.01)
    assert torch.isclose(new_mean, 0.01 * lengths.mean())
    assert torch.isfinite(pen).all() and pen.shape == (n,)
    # With a non-linear generator the penalty is differentiable w.r.t. its input.
    img = torch.tanh(ws.mean(dim=1) @ M).reshape(n, 1, h, h)
    pen, _ = losses.g_path_length_penalty(losses.g_path_lengths(img, ws), pl_mean, decay=0.01)
    (g,) = torch.autograd.grad(pen.mean(), ws)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_lazy_regularization_ratio():
    assert losses.lazy_regularization_ratio(16) == 16 / 17
    assert losses.lazy_regularization_ratio(4) == 0.8
    assert losses.lazy_regularization_ratio(0) == 1.0


def test_ema_half_life_and_rampup():
    # After ema_kimg thousand images the old weights count half.
    beta = ema_beta(batch_size=32, ema_kimg=10, cur_nimg=10**9, rampup=0.05)
    assert abs(beta ** (10_000 / 32) - 0.5) < 1e-9
    # Early in training the ramp-up shortens the half-life to cur_nimg * rampup.
    early = ema_beta(batch_size=32, ema_kimg=10, cur_nimg=3200, rampup=0.05)
    assert abs(early ** (160 / 32) - 0.5) < 1e-9
    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, 0.25)
    assert torch.allclose(ema.weight, model.weight * 0.75 + before * 0.25)
