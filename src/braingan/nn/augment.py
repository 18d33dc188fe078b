"""Adaptive discriminator augmentation (ADA) for grayscale MRI slices, written from the paper.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (arXiv 2006.06676).
Every image the discriminator sees (real and generated) goes through `AugmentPipe`; each transform
is applied to each sample independently with probability `p`, and `ada_step` moves `p` so that
the overfitting heuristic r_t = E[sign(D(real))] stays near a target (0.6 in the paper). The x-flip,
once applied, flips or not by a fair coin (as in the paper's pipeline): a sample is mirrored with
probability p / 2.

Only transforms that make sense for MRI are offered: left-right flip, integer translation,
isotropic scaling, small rotation (geometric), then brightness and contrast (intensity). No
90-degree rotations, no luma flip, no hue/saturation: intensities mean something and are grayscale.
Contrast scales about each image's mean, where the paper's pipeline scales about 0: the mean
intensity stays put, so contrast is independent of brightness (which alone moves the mean), and
the black background at -1 moves less. For a mid-brain slice (mean about -0.56) and one std of
the factor, c = 2**0.5, the background goes to -0.56 + 1.41 * (-0.44) = -1.18 here and to -1.41
about 0: a shift of (1 - c)(1 + mean) instead of (1 - c), 0.44 times as large.

Leaking. An augmentation does not leak into G if, as an operator on probability distributions,
it is invertible: D then only ever compares augmented reals with augmented fakes, and the one way
for G to match those is to match the clean distributions. A random transform T applied with
probability q is the operator (1 - q) I + q K, where K averages over T's random parameter; at
each frequency w of the group T moves along, it multiplies by (1 - q) + q K_hat(w), K_hat being
the characteristic function of the parameter's distribution. So it is invertible (non-leaking)
iff (1 - q) + q K_hat(w) != 0 for every w, and the whole pipe, a composition, iff each transform is:

- x-flip, a group of two elements: eigenvalues 1 and 1 - 2q. With q = p / 2 that is 1 - p > 0
  for every p < 1. Flipping with probability q = p instead would leak at p = 0.5, where D cannot
  tell an image from its mirror and G may learn mirrored anatomy.
- scale (log2-normal), brightness (normal), contrast (log2-normal): Gaussian in their group's
  coordinate (log factor, offset), so K_hat = exp(-sigma^2 w^2 / 2) > 0: safe for every p < 1.
- integer translation and rotation, uniform in a symmetric range: K_hat is sinc-like, with a
  minimum of about -0.217 (sin(x) / x at x = 4.49) whatever the range, so they are invertible
  only while p < 1 / 1.217 = 0.82. This is the paper's empirical "p below ~0.8 is safe"; the
  controller may take p higher on very small data sets, where translations and rotations can
  then start to leak (watch ADA/p).

Anti-aliasing. The paper's pipeline additionally supersamples geometric transforms with a wavelet
filter so the discriminator never sees aliasing. We deliberately use one plain bilinear
`grid_sample` instead: flips and integer translations are exact pixel copies (no interpolation at
all), and scales stay near 1 (std 0.2 in log2) with rotations of a few degrees, so the only
artefact is the mild blur of bilinear interpolation, applied with probability p < 1 and therefore
not something G can gain by copying. If larger scale/rotation strengths are used, add
supersampling here first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..utils.errors import UsageError
from .grid_sample import grid_sample

P_MAX = 1.0 - 2.0**-24  # largest float32 below 1: `ada_step` keeps p in [0, 1) even after float32 storage


class AugmentPipe(nn.Module):
    """Differentiable per-sample augmentation; `p` is a float32 buffer, so it is saved in checkpoints."""

    p: torch.Tensor  # [] float32 buffer

    def __init__(
        self,
        xflip: bool = True,  # left-right flip (the brain is roughly symmetric), mirrors with probability p / 2; False = off
        translate: float = 0.125,  # integer translation: max |shift| as a fraction of H and W, uniform, rounded to pixels; 0 = off
        scale: float = 0.2,  # isotropic scaling: std of log2(scale factor), log2-normal; 0 = off
        rotate_deg: float = 10.0,  # rotation about the centre: uniform in [-deg, +deg] degrees; 0 = off
        brightness: float = 0.2,  # additive offset: std of a normal, in [-1, 1] intensity units; 0 = off
        contrast: float = 0.5,  # factor about each image's mean: std of log2(factor), log2-normal; 0 = off
        p_init: float = 0.0,  # initial probability of applying each transform to each sample, in [0, 1]
    ):
        super().__init__()
        for name, value in dict(
            translate=translate, scale=scale, rotate_deg=rotate_deg, brightness=brightness, contrast=contrast
        ).items():
            if not value >= 0:
                raise UsageError(f"{name} must be >= 0, got {value}")
        self.xflip = bool(xflip)
        self.translate = float(translate)
        self.scale = float(scale)
        self.rotate_deg = float(rotate_deg)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.register_buffer("p", torch.zeros((), dtype=torch.float32))  # scalar, float32
        self.set_p(p_init)

    def set_p(self, p: float) -> None:
        """Sets the augmentation probability in place (keeps the buffer's device and dtype)."""
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise UsageError(f"p must be in [0, 1], got {p}")
        self.p.fill_(p)

    def _apply(self, fn, *args, **kwargs):
        # `.half()`, `.to(torch.bfloat16)` (e.g. Lightning's bf16-true) would round p to ~3 digits and
        # swallow the controller's tiny steps (batch / 500k); p follows the device but stays float32.
        p = self.p.detach().clone()
        super()._apply(fn, *args, **kwargs)
        if self.p.dtype != torch.float32:
            self.p = p.to(self.p.device)
        return self

    def extra_repr(self) -> str:
        return (
            f"xflip={self.xflip}, translate={self.translate}, scale={self.scale}, rotate_deg={self.rotate_deg}, "
            f"brightness={self.brightness}, contrast={self.contrast}, p={float(self.p):.4f}"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C, H, W], same dtype
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"expected floating images [N, C, H, W], got {tuple(images.shape)} {images.dtype}")
        # p stays a device tensor: the coins compare against it, so nothing here waits for the GPU.
        # Every sample is drawn for (a sample no transform selected comes back bit-identical).
        p = self.p
        n, _, h, w = images.shape
        device = images.device
        x = images.float()  # [N, C, H, W] float32 (no copy for float32 input)

        # Geometric: one pixel-space sampling matrix per sample, one grid_sample, kept where it moves.
        g = self._sample_geometry(n, h, w, p, device)  # [N, 2, 3]
        moved = (g != torch.eye(2, 3, device=device)).flatten(1).any(1)  # [N]
        x = torch.where(moved[:, None, None, None], _warp(x, g), x)
        applied = moved  # [N] sample touched by any transform

        # Intensity: brightness, then contrast about each image's mean over (C, H, W).
        if self.brightness > 0:
            on = _coin(n, p, device)  # [N]
            b = torch.randn(n, device=device) * self.brightness  # [N]
            x = torch.where(on[:, None, None, None], x + b[:, None, None, None], x)
            applied = applied | on
        if self.contrast > 0:
            on = _coin(n, p, device)
            c = torch.exp2(torch.randn(n, device=device) * self.contrast)  # [N]
            mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
            x = torch.where(on[:, None, None, None], (x - mean) * c[:, None, None, None] + mean, x)
            applied = applied | on

        # Samples no transform touched are returned bit-identical, whatever the input dtype.
        return torch.where(applied[:, None, None, None], x.to(images.dtype), images)

    def _sample_geometry(self, n: int, h: int, w: int, p: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Per-sample matrix [N, 2, 3] mapping output pixel coordinates to input pixel coordinates.

        Coordinates are in pixels with the origin at the image centre (x right, y down). The image
        content is flipped, scaled, rotated (all about the centre), then translated; the sampling
        matrix is the inverse of that. Unselected transforms use exact identity parameters, so a
        sample with no geometric transform gets exactly the identity matrix. Built element-wise
        (no matmul) so TF32 matmul settings can never round it.
        """
        one = torch.ones(n, device=device)  # [N] float32
        zero = torch.zeros(n, device=device)
        f = one  # x-flip sign
        if (
            self.xflip
        ):  # applied with probability p, then a fair coin: mirrored with probability p / 2 (non-leaking, see above)
            f = torch.where(_coin(n, p, device) & _coin(n, 0.5, device), -one, one)
        tx, ty = zero, zero  # content shift in whole pixels
        if self.translate > 0:
            on = _coin(n, p, device)
            t = (torch.rand(n, 2, device=device) * 2 - 1) * self.translate  # [N, 2] fraction of W, H
            tx = torch.where(on, torch.round(t[:, 0] * w), zero)
            ty = torch.where(on, torch.round(t[:, 1] * h), zero)
        s = one  # content scale factor
        if self.scale > 0:
            on = _coin(n, p, device)
            s = torch.where(on, torch.exp2(torch.randn(n, device=device) * self.scale), one)
        cos, sin = one, zero  # content rotation
        if self.rotate_deg > 0:
            on = _coin(n, p, device)
            theta = (torch.rand(n, device=device) * 2 - 1) * math.radians(self.rotate_deg)
            cos = torch.where(on, torch.cos(theta), one)
            sin = torch.where(on, torch.sin(theta), zero)
        # content: q = R(theta) * s * diag(f, 1) * p + t   =>   sampling: p = diag(f, 1) * R(-theta) / s * (q - t)
        a, b = f * cos / s, f * sin / s
        d, e = -sin / s, cos / s
        ox, oy = -(a * tx + b * ty), -(d * tx + e * ty)
        return torch.stack([a, b, ox, d, e, oy], dim=1).reshape(n, 2, 3)


def _coin(n: int, p: torch.Tensor | float, device: torch.device) -> torch.Tensor:  # [N] bool, True with probability p
    return torch.rand(n, device=device) < p


def _warp(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Resamples x [M, C, H, W] float32 with pixel-space matrices g [M, 2, 3] (bilinear, reflection).

    The grid is computed in float32 from exact pixel centres; for power-of-two H and W a matrix of
    flips and integer shifts lands exactly on pixel centres, so those samples are exact copies.
    """
    _, _, h, w = x.shape
    px = torch.arange(w, device=x.device, dtype=torch.float32) + (0.5 - w / 2)  # [W] pixel centres, origin at centre
    py = torch.arange(h, device=x.device, dtype=torch.float32) + (0.5 - h / 2)  # [H]
    g = g[:, :, :, None, None]  # [M, 2, 3, 1, 1]
    gx = g[:, 0, 0] * px + g[:, 0, 1] * py[:, None] + g[:, 0, 2]  # [M, H, W] input x in pixels
    gy = g[:, 1, 0] * px + g[:, 1, 1] * py[:, None] + g[:, 1, 2]  # [M, H, W] input y in pixels
    grid = torch.stack([gx * (2.0 / w), gy * (2.0 / h)], dim=-1)  # [M, H, W, 2] in [-1, 1], align_corners=False
    # nn.grid_sample: R1 differentiates through this warp twice, which F.grid_sample cannot before torch 2.12/2.13
    return grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def ada_step(
    p: torch.Tensor,  # [] current p
    rt: torch.Tensor,  # [] E[sign(D(real))] over the images since the last adjustment
    target: float,
    batch_images: int,
    ada_kimg: float = 500.0,
) -> torch.Tensor:  # [] float64, on p's device
    """One step of the ADA controller on the device (no host synchronization): the new p, in [0, 1).

    rt = E[sign(D(real))] over the images seen since the last adjustment (`batch_images` of them:
    batch size * interval). p moves by sign(rt - target) * batch_images / (ada_kimg * 1000), so it
    can go from 0 to 1 in `ada_kimg` thousand images (500 in the paper). Computed in float64, so
    the float32 buffer receives p's exact rounding whatever the step size. A NaN rt gives NaN: the
    caller keeps the old p then.
    """
    if batch_images < 0 or not ada_kimg > 0:
        raise ValueError(f"need batch_images >= 0 and ada_kimg > 0, got {batch_images}, {ada_kimg}")
    sign = torch.sign(rt.double() - target)
    return (p.double() + sign * batch_images / (ada_kimg * 1000.0)).clamp(0.0, P_MAX)


def ada_adjust(p: float, rt: float, target: float, batch_images: int, ada_kimg: float = 500.0) -> float:
    """`ada_step` on Python numbers: the new p, clamped to [0, 1); a non-finite rt is an error."""
    if not math.isfinite(rt):
        raise ValueError(f"rt must be finite, got {rt} (no real logits accumulated?)")
    f64 = torch.float64
    return float(
        ada_step(torch.tensor(float(p), dtype=f64), torch.tensor(float(rt), dtype=f64), target, batch_images, ada_kimg)
    )
