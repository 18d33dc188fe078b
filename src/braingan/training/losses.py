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


def d_r1_penalty(
    real_logits: torch.Tensor,  # [N, 1] D(real_img)
    real_img: torch.Tensor,  # [N, C, H, W] FP32, requires grad
    grad_scale: float = 1.0,  # multiplies the outputs before autograd.grad, divided out after (see below)
) -> torch.Tensor:  # [N] FP32
    """Squared gradient norm of D(real) w.r.t. the real images, per sample.

    `real_img` must require grad and `real_logits` must be computed from it. The graph is
    kept (create_graph) so the penalty can be back-propagated into D.
    The R1 loss is `penalty.mean() * (gamma / 2)`.

    Mixed precision. Autocast changes only the forward; `autograd.grad` runs each backward op
    in the dtype of its forward op, so inside D's 16-bit blocks this gradient is computed in
    FP16/BF16 and returns to FP32 at the cast of `real_img`. Lightning's GradScaler (16-mixed)
    scales only the loss given to `manual_backward`, i.e. the outer backward through this
    graph, not this inner gradient. The recipe of the PyTorch AMP docs ("gradient penalty")
    scales the outputs by the scaler's scale and unscales the gradient before squaring:
    `grad_scale` does exactly that (a power of two changes nothing in FP32). The default 1
    is what StyleGAN2-ADA's FP16 training does (no loss scaling at all): measured on CPU
    float16 at initialization it agrees with FP32 to ~1 % (FP16 rounding), while Lightning's
    initial scale 2**16 overflows the FP16 blocks. Squaring and summing are done in FP32.
    """
    outputs = real_logits.float().sum() * grad_scale
    (grad,) = torch.autograd.grad(outputs=outputs, inputs=real_img, create_graph=True, only_inputs=True)
    with torch.autocast(device_type=grad.device.type, enabled=False):
        grad = grad.float() / grad_scale
        return grad.square().sum(dim=[1, 2, 3])


def g_path_lengths(
    fake_img: torch.Tensor,  # [N, C, H, W] computed from ws
    ws: torch.Tensor,  # [N, num_ws, w_dim] FP32, requires grad
    grad_scale: float = 1.0,  # as in d_r1_penalty: outputs scaled before autograd.grad, gradient unscaled after
) -> torch.Tensor:  # [N] FP32
    """Length of the Jacobian-vector product J_w^T y with y ~ N(0, I) / sqrt(H W), per sample.

    `fake_img` [N, C, H, W] must be computed from `ws` [N, num_ws, w_dim] (which requires grad).
    The product with y, the lengths and the unscaling are FP32; inside G's 16-bit blocks the
    Jacobian-vector product itself runs in their dtype (see d_r1_penalty).
    """
    h, w = fake_img.shape[2], fake_img.shape[3]
    with torch.autocast(device_type=fake_img.device.type, enabled=False):
        fake_img = fake_img.float()
        noise = torch.randn_like(fake_img) / math.sqrt(h * w)
        outputs = (fake_img * noise).sum() * grad_scale
    (grad,) = torch.autograd.grad(outputs=outputs, inputs=ws, create_graph=True, only_inputs=True)
    with torch.autocast(device_type=grad.device.type, enabled=False):
        grad = grad.float() / grad_scale
        return grad.square().sum(dim=2).mean(dim=1).sqrt()


def g_path_length_penalty(
    path_lengths: torch.Tensor,  # [N] from g_path_lengths
    pl_mean: torch.Tensor,  # [] running mean of the path length (a buffer)
    decay: float = 0.01,  # running-mean update rate
    batch_mean: torch.Tensor
    | None = None,  # [] mean path length of the global batch (several processes); None = of path_lengths
) -> tuple[torch.Tensor, torch.Tensor]:  # penalty [N], new running mean []
    """(|J^T y| - a)^2 where `a` is the running mean of path lengths; returns the updated mean too."""
    if batch_mean is None:
        batch_mean = path_lengths.mean()
    new_mean = pl_mean.lerp(batch_mean.detach().to(pl_mean.dtype), decay)
    return (path_lengths - new_mean).square(), new_mean


def lazy_regularization_ratio(interval: int | None) -> float:
    """Adam lr and beta correction for regularization run every `interval` minibatches (StyleGAN2 app. B)."""
    if not interval:
        return 1.0
    return interval / (interval + 1)
