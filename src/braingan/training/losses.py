"""StyleGAN2 losses as small pure functions.

Non-saturating logistic loss (Goodfellow et al. 2014), R1 gradient penalty on reals
(Mescheder et al. 2018) and path-length regularization (Karras et al. 2020). Each returns
per-sample values or a scalar; the caller decides on weights and lazy intervals.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: softplus(D(fake)) + softplus(-D(real)), averaged. Falls as D separates them."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: softplus(-D(G(z))), averaged. Falls as D believes the fakes."""
    return F.softplus(-fake_logits).mean()


def d_r1_penalty(real_logits: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:  # [N]
    """Squared gradient norm of D(real) w.r.t. the real images, per sample.

    `real_img` must require grad and `real_logits` must be computed from it. The graph is
    kept (create_graph) so the penalty can be back-propagated into D.
    The R1 loss is `penalty.mean() * (gamma / 2)`.
    """
    (grad,) = torch.autograd.grad(outputs=real_logits.sum(), inputs=real_img, create_graph=True, only_inputs=True)
    return grad.float().square().sum(dim=[1, 2, 3])


def g_path_lengths(fake_img: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:  # [N]
    """Length of the Jacobian-vector product J_w^T y with y ~ N(0, I) / sqrt(H W), per sample.

    `fake_img` [N, C, H, W] must be computed from `ws` [N, num_ws, w_dim] (which requires grad).
    """
    h, w = fake_img.shape[2], fake_img.shape[3]
    noise = torch.randn_like(fake_img) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad(outputs=(fake_img * noise).sum(), inputs=ws, create_graph=True, only_inputs=True)
    return grad.float().square().sum(dim=2).mean(dim=1).sqrt()


def g_path_length_penalty(
    path_lengths: torch.Tensor,  # [N] from g_path_lengths
    pl_mean: torch.Tensor,  # [] running mean of the path length (a buffer)
    decay: float = 0.01,  # running-mean update rate
) -> tuple[torch.Tensor, torch.Tensor]:  # penalty [N], new running mean []
    """(|J^T y| - a)^2 where `a` is the running mean of path lengths; returns the updated mean too."""
    new_mean = pl_mean.lerp(path_lengths.mean().detach().to(pl_mean.dtype), decay)
    return (path_lengths - new_mean).square(), new_mean


def lazy_regularization_ratio(interval: int | None) -> float:
    """Adam lr and beta correction for regularization run every `interval` minibatches (StyleGAN2 app. B)."""
    if not interval:
        return 1.0
    return interval / (interval + 1)
