"""Residual discriminator of StyleGAN2 with minibatch standard deviation and projection conditioning."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import NetworkConfig
from .layers import EqualizedConv2d, EqualizedLinear
from .mapping import normalize_2nd_moment
from .precision import block_context, block_dtype, fp32_context

SQRT_HALF = math.sqrt(0.5)
D_MAPPING_LR_MULTIPLIER = 0.01  # of the class mapping network's layers, as in G's mapping network


class DiscriminatorBlock(nn.Module):
    """conv3x3 -> conv3x3 with FIR down-sampling, plus a 1x1 down-sampled residual; each path gain sqrt(0.5).

    With `reduced_precision` it computes in the autocast dtype while autocast is on; otherwise in FP32 always.
    """

    def __init__(
        self,
        in_channels: int,  # channels from the previous block; 0 = first block (has FromRGB)
        tmp_channels: int,  # channels inside the block
        out_channels: int,  # channels handed to the next block
        img_channels: int,  # channels of the input image
        conv_clamp: float | None = None,  # clamp conv outputs to +-this; None = off
        reduced_precision: bool = False,  # compute in the autocast dtype (FP16/BF16) when autocast is on
        fused_bias_act: bool = False,  # gains into the kernels, bias into the convs
        channels_last: bool = False,  # NHWC features
    ):
        super().__init__()
        self.reduced_precision = reduced_precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        fast: dict[str, Any] = dict(conv_clamp=conv_clamp, fused_bias_act=fused_bias_act)
        self.fromrgb = (
            EqualizedConv2d(img_channels, tmp_channels, 1, activation="lrelu", **fast) if in_channels == 0 else None
        )
        self.conv0 = EqualizedConv2d(tmp_channels, tmp_channels, 3, activation="lrelu", **fast)
        self.conv1 = EqualizedConv2d(tmp_channels, out_channels, 3, activation="lrelu", down=2, **fast)
        self.skip = EqualizedConv2d(tmp_channels, out_channels, 1, bias=False, down=2, fused_bias_act=fused_bias_act)

    def forward(
        self, x: torch.Tensor
    ) -> torch.Tensor:  # [N, Cin or img_channels, R, R] -> [N, Cout, R/2, R/2] in the block's dtype
        dev = x.device.type
        dtype = block_dtype(dev, self.reduced_precision)
        with block_context(dev, dtype):
            x = x.to(dtype=dtype, memory_format=self.memory_format)
            if self.fromrgb is not None:
                x = self.fromrgb(x)
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv1(self.conv0(x), gain=SQRT_HALF)
            return y + x


def minibatch_stddev(
    x: torch.Tensor,  # [N, C, H, W]
    group_size: int,  # samples per group; the batch must be divisible by min(group_size, N)
    num_channels: int = 1,  # number of statistics appended (C must be divisible by it)
) -> torch.Tensor:  # [N, C + num_channels, H, W]
    """Appends the average standard deviation of each feature over groups of samples."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"batch size {n} is not divisible by the minibatch-std group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # [G, M, F, c, H, W]
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W]
    y = y.mean(dim=[2, 3, 4])  # [M, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch std, conv, fully connected, output (projection onto the class embedding if conditional).

    Always FP32, also under autocast.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        mbstd_group_size: int,
        mbstd_num_channels: int,
        conv_clamp: float | None = None,
        fused_bias_act: bool = False,
    ):
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = EqualizedConv2d(
            in_channels + mbstd_num_channels,
            in_channels,
            3,
            activation="lrelu",
            conv_clamp=conv_clamp,
            fused_bias_act=fused_bias_act,
        )
        self.fc = EqualizedLinear(in_channels * 16, in_channels, activation="lrelu")
        self.out = EqualizedLinear(in_channels, 1 if cmap_dim == 0 else cmap_dim)
        self.cmap_dim = cmap_dim

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:  # [N, C, 4, 4] -> [N, 1] FP32
        with fp32_context(x.device.type):
            x = x.float()
            if self.mbstd_group_size > 0:
                x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
            x = self.conv(x)
            x = self.fc(x.flatten(1))
            x = self.out(x)
            if cmap is not None:
                x = (x * cmap.float()).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
            return x


class Discriminator(nn.Module):
    """Image [N, img_channels, R, R] (and class) -> realness logit [N, 1]."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.c_dim = cfg.c_dim
        blocks = []
        for res in [2**i for i in range(cfg.resolution_log2, 2, -1)]:
            cin = 0 if res == cfg.img_resolution else cfg.channels_at(res)
            blocks.append(
                DiscriminatorBlock(
                    cin,
                    cfg.channels_at(res),
                    cfg.channels_at(res // 2),
                    cfg.img_channels,
                    cfg.conv_clamp,
                    reduced_precision=cfg.reduced_precision_at(res),
                    fused_bias_act=cfg.fused_bias_act,
                    channels_last=cfg.channels_last,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        c4 = cfg.channels_at(4)
        cmap_dim = c4 if cfg.c_dim > 0 else 0
        # Conditioning (projection discriminator): the one-hot class is embedded, normalized and
        # mapped to cmap by a mapping network like G's (StyleGAN2-ADA), without a tracked average.
        self.c_embed = EqualizedLinear(cfg.c_dim, cmap_dim) if cfg.c_dim > 0 else None
        self.c_mapping = nn.Sequential(
            *(
                EqualizedLinear(cmap_dim, cmap_dim, activation="lrelu", lr_multiplier=D_MAPPING_LR_MULTIPLIER)
                for _ in range(cfg.d_mapping_layers if cfg.c_dim > 0 else 0)
            )
        )  # [N, cmap_dim] -> [N, cmap_dim]; empty if unconditional or d_mapping_layers=0 (older checkpoints)
        self.epilogue = DiscriminatorEpilogue(
            c4, cmap_dim, cfg.mbstd_group_size, cfg.mbstd_num_channels, cfg.conv_clamp, cfg.fused_bias_act
        )

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:  # [N, 1]
        x = img
        for block in self.blocks:
            x = block(x)
        cmap = None
        if self.c_embed is not None:
            if c is None:
                raise ValueError("this discriminator is conditional: pass class labels c")
            with fp32_context(img.device.type):  # projection conditioning in FP32
                cmap = self.c_mapping(normalize_2nd_moment(self.c_embed(c.float())))  # [N, cmap_dim]
        return self.epilogue(x, cmap)
