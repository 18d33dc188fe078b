"""Projection: the latents (and noise maps) from which a generator renders given images.

A reimplementation of the projector described in the StyleGAN2 paper (Karras et al. 2020,
section 5 and appendix D), batched: N images are optimized together, each with its own latent
and noise maps, their losses summed (Adam's elementwise updates keep them independent).

    start      w_avg: the mean of `w_avg_samples` mapped z, of the image's class for conditional
               models; sigma_w, the spread of those w, scales the latent noise below
    per step   t = step / steps
               lr(t) = lr * min(1, t / lr_rampup) * (1 - cos(pi * min(1, (1 - t) / lr_rampdown))) / 2
               ws = w + sigma_w * initial_noise * max(0, 1 - t / noise_ramp)^2 * randn (this step only)
               loss = pixel + MS-SSIM + feature terms (inversion/losses.py) + noise_weight * autocorrelation
               Adam step on w (and the noise maps), then the noise maps renormalized to N(0, 1) statistics
    modes      w: one w per image, broadcast to every layer ([N, 1, w_dim]); w+: one per layer
               ([N, num_ws, w_dim]), which reaches images outside the generator's own range
    noise      optimize_noise: each synthesis layer's noise is a per-image map [N, 1, r, r] starting
               from the generator's fixed noise (a unit Gaussian draw); otherwise the fixed noise
               (noise_mode=const), so the result renders from ws alone like `make generate`
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..nn.synthesis import Generator, SynthesisLayer
from . import losses

MODES = ("w", "w+")


@dataclass
class ProjectOptions:
    mode: str = "w+"  # w (one w per image) | w+ (one w per layer)
    steps: int = 300  # optimizer steps
    lr: float = 0.1  # Adam's peak learning rate
    lr_rampup: float = 0.05  # fraction of the steps over which lr ramps up linearly
    lr_rampdown: float = 0.25  # fraction of the steps over which lr ramps down (cosine)
    initial_noise: float = 0.05  # latent noise at the start, times sigma_w
    noise_ramp: float = 0.75  # fraction of the steps over which the latent noise fades (quadratically)
    optimize_noise: bool = False  # optimize per-image noise maps too
    noise_weight: float = 1e5  # weight of the noise maps' autocorrelation penalty
    l2_weight: float = 1.0  # mean squared pixel difference ([-1, 1] scale)
    l1_weight: float = 0.0  # mean absolute pixel difference
    ms_ssim_weight: float = 0.0  # 1 - MS-SSIM
    d_feature_weight: float = 0.0  # D's block activations (needs D)
    inception_weight: float = 0.0  # Inception-v3 pool features (needs the extractor)
    w_avg_samples: int = 1000  # mapped z per class for w_avg and sigma_w
    seed: int = 0  # seeds those z and the latent noise

    def check(self) -> None:
        """A ValueError naming the first option out of range (the tool turns it into its one line)."""
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode} must be w or w+")
        for name, value in vars(self).items():
            if name not in ("mode", "optimize_noise") and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            ):
                raise ValueError(f"{name}={value} must be a number")
        if not isinstance(self.steps, int) or self.steps < 1 or self.w_avg_samples < 2 or self.lr <= 0:
            raise ValueError("steps must be a whole number >= 1, w_avg_samples >= 2 and lr > 0")
        if not (0 <= self.lr_rampup <= 1 and 0 < self.lr_rampdown <= 1 and 0 < self.noise_ramp <= 1):
            raise ValueError("lr_rampup must lie in [0, 1], lr_rampdown and noise_ramp in (0, 1]")
        if self.initial_noise < 0 or self.noise_weight < 0:
            raise ValueError("initial_noise and noise_weight must be >= 0")
        weights = (self.l2_weight, self.l1_weight, self.ms_ssim_weight, self.d_feature_weight, self.inception_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("the loss weights must be >= 0, one of them above 0")


@dataclass
class Projection:
    """What `project` returns; tensors on the CPU."""

    ws: torch.Tensor  # [N, num_ws, w_dim] float32 (w mode: the same w in every row)
    noises: list[torch.Tensor] | None  # per synthesis layer [N, 1, r, r]; None = the fixed noise
    images: torch.Tensor  # [N, C, R, R] in about [-1, 1]: the reconstructions
    start: torch.Tensor  # [N, C, R, R]: what the start (w_avg, fixed noise) renders
    loss: torch.Tensor  # [N]: the final loss (without latent noise)
    history: torch.Tensor  # [steps, N]: the loss at each step
    start_loss: torch.Tensor  # [N]: the loss of the start


def noise_layers(G: Generator) -> list[SynthesisLayer]:
    """The synthesis layers with a noise input, in forward order."""
    return [m for m in G.synthesis.modules() if isinstance(m, SynthesisLayer)]


@contextlib.contextmanager
def noise_maps(G: Generator, noises: Sequence[torch.Tensor] | None) -> Iterator[None]:
    """Inside the block, noise_mode=const renders with `noises` (per layer [N, 1, r, r]) in place of
    the fixed noise; the fixed noise is put back afterwards. None leaves the fixed noise."""
    if noises is None:
        yield
        return
    layers = noise_layers(G)
    saved = [layer.noise_const for layer in layers]
    try:
        for layer, noise in zip(layers, noises, strict=True):
            layer.noise_const = noise  # broadcasts over channels: x [N, C, r, r] + noise [N, 1, r, r]
        yield
    finally:
        for layer, noise in zip(layers, saved, strict=True):
            layer.noise_const = noise


@torch.no_grad()
def w_statistics(
    G: Generator, labels: torch.Tensor | None, samples: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_avg [N, w_dim], sigma_w [N]) per image: over `samples` mapped z (of each image's class when
    conditional); sigma_w = sqrt(mean ||w - w_avg||^2), the official projector's latent spread."""
    device = next(G.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=generator).to(device)
    classes = [None] if labels is None else sorted(set(labels.tolist()))
    stats = {}
    for k in classes:
        c = None if k is None else F.one_hot(torch.full([samples], k, device=device), G.c_dim).float()
        w = G.mapping(z, c)[:, 0]  # [samples, w_dim]
        mean = w.mean(dim=0)
        stats[k] = (mean, (w - mean).square().sum(dim=1).mean().sqrt())
    if labels is None:
        mean, sigma = stats[None]
        return mean[None], sigma[None]
    keys = labels.tolist()
    return torch.stack([stats[k][0] for k in keys]), torch.stack([stats[k][1] for k in keys])


def learning_rate(opt: ProjectOptions, step: int) -> float:
    t = step / opt.steps
    ramp = min(1.0, (1.0 - t) / opt.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return opt.lr * ramp * min(1.0, t / opt.lr_rampup if opt.lr_rampup > 0 else 1.0)


class Loss:
    """The weighted loss of ProjectOptions against fixed targets; per image [N]."""

    def __init__(
        self,
        opt: ProjectOptions,
        target: torch.Tensor,  # [N, C, R, R] in [-1, 1]
        mask: torch.Tensor | None = None,  # [N or 1, 1, R, R]: where the pixel losses count; None = everywhere
        D: torch.nn.Module | None = None,  # for d_feature_weight
        inception: torch.nn.Module | None = None,  # for inception_weight
    ):
        if opt.d_feature_weight > 0 and D is None:
            raise ValueError("d_feature_weight > 0 needs the discriminator")
        if opt.inception_weight > 0 and inception is None:
            raise ValueError("inception_weight > 0 needs the Inception extractor")
        self.opt, self.target, self.mask = opt, target, mask
        self.D = D if opt.d_feature_weight > 0 else None
        self.inception = inception if opt.inception_weight > 0 else None
        with torch.no_grad():
            self.d_target = losses.discriminator_features(self.D, target) if self.D is not None else None
            self.i_target = losses.inception_features(self.inception, target) if self.inception is not None else None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:  # [N, C, R, R] -> [N]
        opt, y = self.opt, self.target
        total = torch.zeros(len(img), device=img.device)
        if opt.l2_weight > 0:
            total = total + opt.l2_weight * losses.pixel_loss(img, y, "l2", self.mask)
        if opt.l1_weight > 0:
            total = total + opt.l1_weight * losses.pixel_loss(img, y, "l1", self.mask)
        if opt.ms_ssim_weight > 0:
            total = total + opt.ms_ssim_weight * losses.ms_ssim_loss(img, y)
        if self.D is not None and self.d_target is not None:
            d_features = losses.discriminator_features(self.D, img)
            total = total + opt.d_feature_weight * losses.feature_loss(d_features, self.d_target)
        if self.inception is not None and self.i_target is not None:
            i_features = losses.inception_features(self.inception, img)
            total = total + opt.inception_weight * (i_features - self.i_target).square().mean(dim=1)
        return total


def project(
    G: Generator,  # the generator (eval mode, frozen)
    target: torch.Tensor,  # [N, C, R, R] in [-1, 1], on G's device
    labels: torch.Tensor | None = None,  # [N] class indices for conditional models; None = unconditional
    opt: ProjectOptions | None = None,
    mask: torch.Tensor | None = None,  # [N or 1, 1, R, R]: where the pixel losses count; None = everywhere
    D: torch.nn.Module | None = None,  # discriminator, for d_feature_weight
    inception: torch.nn.Module | None = None,  # InceptionFeatures, for inception_weight
) -> Projection:
    """Optimizes one latent (and noise maps) per target image; see the module docstring."""
    opt = opt or ProjectOptions()
    opt.check()
    if (G.c_dim > 0) != (labels is not None):
        raise ValueError("labels are needed exactly when the generator is conditional")
    device, n = target.device, len(target)
    loss_fn = Loss(opt, target, mask, D, inception)
    w_avg, sigma_w = w_statistics(G, labels, opt.w_avg_samples, opt.seed)  # [N or 1, w_dim], [N or 1]
    w_avg, sigma_w = w_avg.expand(n, -1), sigma_w.expand(n)
    rows = 1 if opt.mode == "w" else G.num_ws
    w = w_avg[:, None].repeat(1, rows, 1).clone().requires_grad_(True)  # [N, rows, w_dim]
    noises = None
    if opt.optimize_noise:
        noises = [
            layer.noise_const.detach()[None, None].repeat(n, 1, 1, 1).clone().requires_grad_(True)
            for layer in noise_layers(G)
        ]  # per layer [N, 1, r, r]
    params = [w, *(noises or [])]
    optimizer = torch.optim.Adam(params, lr=opt.lr, betas=(0.9, 0.999))
    generator = torch.Generator(device=device).manual_seed(opt.seed)

    def render(latent: torch.Tensor) -> torch.Tensor:  # [N, rows, w_dim] -> [N, C, R, R]
        with noise_maps(G, noises):
            return G.synthesis(latent.expand(-1, G.num_ws, -1), noise_mode="const")

    with torch.no_grad():
        start = render(w)
        start_loss = loss_fn(start)
    history = []
    for step in range(opt.steps):
        t = step / opt.steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(opt, step)
        scale = sigma_w * opt.initial_noise * max(0.0, 1.0 - t / opt.noise_ramp) ** 2  # [N]
        w_noise = torch.randn(w.shape, generator=generator, device=device) * scale[:, None, None]
        per_image = loss_fn(render(w + w_noise))  # [N]
        history.append(per_image.detach())
        if noises is not None:
            per_image = per_image + opt.noise_weight * losses.noise_regularization(noises)
        optimizer.zero_grad(set_to_none=True)
        per_image.sum().backward()
        optimizer.step()
        if noises is not None:
            losses.normalize_noise(noises)
    with torch.no_grad():
        final = render(w)
        final_loss = loss_fn(final)
    return Projection(
        ws=w.detach().expand(-1, G.num_ws, -1).float().cpu().clone(),
        noises=[noise.detach().cpu() for noise in noises] if noises is not None else None,
        images=final.detach().float().cpu(),
        start=start.float().cpu(),
        loss=final_loss.cpu(),
        history=torch.stack(history).cpu(),
        start_loss=start_loss.cpu(),
    )


@torch.no_grad()
def render(
    G: Generator,
    ws: torch.Tensor,  # [N, num_ws, w_dim] on G's device
    noises: Sequence[torch.Tensor] | None = None,  # per layer [N, 1, r, r]; None = the fixed noise
) -> torch.Tensor:  # [N, C, R, R]
    """What a projection renders: ws through synthesis with its noise maps (or the fixed noise)."""
    with noise_maps(G, None if noises is None else [n.to(ws.device) for n in noises]):
        return G.synthesis(ws, noise_mode="const")
