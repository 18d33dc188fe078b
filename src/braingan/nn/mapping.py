"""Mapping network z (+ class) -> w, with the tracked w average used for truncation."""

from __future__ import annotations

import torch
from torch import nn

from .layers import EqualizedLinear


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scales each vector to unit root-mean-square (the 'pixel norm' of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    w_avg: torch.Tensor  # buffer [w_dim]: running mean of w (truncation centre)
    w_avg_class: torch.Tensor  # buffer [c_dim, w_dim]: per-class running means (conditional only)

    def __init__(
        self,
        z_dim: int,  # latent z dimensionality
        c_dim: int,  # number of classes (one-hot conditioning); 0 = unconditional
        w_dim: int,  # output w dimensionality
        num_ws: int,  # how many copies of w the synthesis network consumes
        num_layers: int = 8,  # fully connected layers
        lr_multiplier: float = 0.01,  # learning-rate multiplier of every layer
        w_avg_beta: float = 0.995,  # decay of the tracked w average; None = do not track
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = EqualizedLinear(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualizedLinear(fin, fout, activation="lrelu", lr_multiplier=lr_multiplier)
            for fin, fout in zip(features[:-1], features[1:])
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        if c_dim > 0:  # each class's own w average: conditional truncation pulls toward it
            self.register_buffer("w_avg_class", torch.zeros(c_dim, w_dim))

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] one-hot class, or None
        truncation_psi: float = 1.0,  # 1 = no truncation, 0 = every w becomes w_avg (its class's, if conditional)
        truncation_cutoff: int | None = None,  # truncate only the first N ws; None = all
        update_emas: bool = False,  # update the tracked w average (training only)
    ) -> torch.Tensor:  # [N, num_ws, w_dim]
        # The mapping network always runs in FP32, also under mixed-precision autocast.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._forward(z, c, truncation_psi, truncation_cutoff, update_emas)

    def _forward(self, z, c, truncation_psi, truncation_cutoff, update_emas) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.embed is not None:
            if c is None:
                raise ValueError("this mapping network is conditional: pass class labels c")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for layer in self.layers:
            x = layer(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
            if self.embed is not None:
                self._update_class_avg(x.detach(), c.to(torch.float32))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            center = (
                self.w_avg if self.embed is None else c.to(torch.float32) @ self.w_avg_class
            )  # [w_dim] or [N, w_dim]
            center = center.unsqueeze(-2)  # broadcasts over the ws axis
            ws[:, :cutoff] = center.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def _update_class_avg(self, w: torch.Tensor, c: torch.Tensor) -> None:
        """Move each class present in the batch toward its batch mean of w ([N, w_dim], [N, c_dim])."""
        counts = c.sum(dim=0)  # [c_dim]
        present = counts > 0
        means = (c.t() @ w) / counts.clamp(min=1)[:, None]  # [c_dim, w_dim]
        updated = means.lerp(self.w_avg_class, self.w_avg_beta)
        self.w_avg_class.copy_(torch.where(present[:, None], updated, self.w_avg_class))
