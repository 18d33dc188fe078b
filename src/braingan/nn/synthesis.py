"""Synthesis network (skip architecture) and the full generator of StyleGAN2."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from .config import NetworkConfig
from .layers import LRELU_GAIN, EqualizedLinear, bias_act, folded_act, make_fir_kernel, upsample2d
from .mapping import MappingNetwork
from .modulated import modulated_conv2d
from .precision import block_context, block_dtype, fp32_context


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv -> per-pixel noise -> bias -> leaky ReLU (gain sqrt 2)."""

    noise_const: torch.Tensor  # buffer [R, R]: the noise of noise_mode="const"
    fir: torch.Tensor  # buffer [taps, taps]: up-sampling filter

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # width of w
        resolution: int,  # output resolution of this layer
        up: int = 1,  # 2 = FIR up-sample by 2 before the conv
        conv_clamp: float | None = None,  # clamp outputs to +-this; None = off
        fused_modconv: bool = True,  # grouped conv (True) or activation scaling (False)
        fused_upconv: bool = False,  # up-sampling as transposed conv + FIR
        fused_bias_act: bool = False,  # demodulation, gain, noise and bias as fused multiply-adds
        upsample_border: str = "full",  # see NetworkConfig.upsample_border
    ):
        super().__init__()
        self.resolution, self.up = resolution, up
        self.conv_clamp, self.fused_modconv = conv_clamp, fused_modconv
        self.fused_upconv, self.fused_bias_act = fused_upconv, fused_bias_act
        self.upsample_border = upsample_border
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("fir", make_fir_kernel(), persistent=False)

    def forward(
        self,
        x: torch.Tensor,  # [N, Cin, R/up, R/up]
        w: torch.Tensor,  # [N, w_dim]
        noise_mode: str = "random",  # 'random', 'const' (fixed per layer) or 'none'
    ) -> torch.Tensor:  # [N, Cout, R, R] in x's dtype (the block's)
        with fp32_context(w.device.type):
            styles = self.affine(w.float())  # [N, Cin] FP32, pre-normalized in modulated_conv2d before any cast
        # fused_bias_act: leaky_relu(g z) = g leaky_relu(z) for g > 0, so the gain goes into the
        # demodulation scale, the bias and the noise strength, and no separate pass applies it.
        fold = self.fused_bias_act
        g = LRELU_GAIN if fold else 1.0
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=True,
            up=self.up,
            fir=self.fir,
            fused=self.fused_modconv,
            fused_up=self.fused_upconv,
            up_border=self.upsample_border,
            bias=self.bias if fold else None,
            gain=g,
        )
        strength = self.noise_strength.to(x.dtype) * g if fold else self.noise_strength.to(x.dtype)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * strength
        elif noise_mode != "none":
            raise ValueError(f"unknown noise_mode {noise_mode!r}")
        if fold:
            return folded_act(x, "lrelu", self.conv_clamp)
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation to `img_channels` (1 for grayscale)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        conv_clamp: float | None = None,
        fused_modconv: bool = True,
        fused_bias_act: bool = False,
    ):
        super().__init__()
        self.conv_clamp, self.fused_modconv, self.fused_bias_act = conv_clamp, fused_modconv, fused_bias_act
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [N, Cin, R, R] -> [N, img_channels, R, R]
        with fp32_context(w.device.type):
            styles = self.affine(w.float()) * self.weight_gain  # [N, Cin] FP32
        if self.fused_bias_act:
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=self.fused_modconv, bias=self.bias)
            return folded_act(x, "linear", self.conv_clamp)
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=self.fused_modconv)
        return bias_act(x, self.bias, act="linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | up-conv), conv, ToRGB added to the up-sampled image.

    With `reduced_precision` the features are computed in the autocast dtype while autocast is
    on; otherwise in FP32 always. The skip image is accumulated in FP32 either way.
    """

    fir: torch.Tensor  # buffer [taps, taps]: up-sampling filter of the skip image

    def __init__(
        self,
        in_channels: int,  # channels from the previous block; 0 = first block (learned 4x4 constant)
        out_channels: int,  # channels of this block
        w_dim: int,  # width of w
        resolution: int,  # resolution of this block
        img_channels: int,  # channels of the image (ToRGB output)
        conv_clamp: float | None = None,  # clamp outputs to +-this; None = off
        fused_modconv: bool = True,  # grouped conv or activation scaling
        reduced_precision: bool = False,  # compute in the autocast dtype (FP16/BF16) when autocast is on
        fused_upconv: bool = False,  # up-sampling conv as transposed conv + FIR
        fused_bias_act: bool = False,  # gains, noise and bias as fused multiply-adds
        channels_last: bool = False,  # NHWC features
        upsample_border: str = "full",  # see NetworkConfig.upsample_border
    ):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.reduced_precision = reduced_precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        fast: dict[str, Any] = dict(fused_modconv=fused_modconv, fused_bias_act=fused_bias_act)
        self.const: nn.Parameter | None
        self.conv0: SynthesisLayer | None
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.const = None
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=2,
                conv_clamp=conv_clamp,
                fused_upconv=fused_upconv,
                upsample_border=upsample_border,
                **fast,
            )
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **fast)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, **fast)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("fir", make_fir_kernel(), persistent=False)

    def forward(
        self,
        x: torch.Tensor | None,  # [N, Cin, R/2, R/2] or None for the first block
        img: torch.Tensor | None,  # [N, img_channels, R/2, R/2] or None for the first block
        ws: torch.Tensor,  # [N, num_conv + 1, w_dim]
        noise_mode: str = "random",
    ) -> tuple[torch.Tensor, torch.Tensor]:  # x [N, Cout, R, R] in the block's dtype, img [N, img_channels, R, R] FP32
        dev = ws.device.type
        dtype = block_dtype(dev, self.reduced_precision)
        with block_context(dev, dtype):
            i = 0
            if self.const is not None:
                x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
                x = x.to(memory_format=self.memory_format)
            else:
                assert self.conv0 is not None and x is not None, "a block after the first takes features x"
                x = self.conv0(x.to(dtype=dtype, memory_format=self.memory_format), ws[:, i], noise_mode)
                i += 1
            x = self.conv1(x, ws[:, i], noise_mode)
            i += 1
            y = self.torgb(x, ws[:, i])
        with fp32_context(dev):
            y = y.float()
            img = y if img is None else upsample2d(img.float(), self.fir) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Consumes ws [N, num_ws, w_dim] and renders images [N, img_channels, R, R] in about [-1, 1]."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.num_ws = cfg.num_ws
        resolutions = [2**i for i in range(2, cfg.resolution_log2 + 1)]
        blocks = []
        for res in resolutions:
            cin = 0 if res == 4 else cfg.channels_at(res // 2)
            blocks.append(
                SynthesisBlock(
                    cin,
                    cfg.channels_at(res),
                    cfg.w_dim,
                    res,
                    cfg.img_channels,
                    cfg.conv_clamp,
                    cfg.fused_modconv,
                    reduced_precision=cfg.reduced_precision_at(res),
                    fused_upconv=cfg.fused_upconv,
                    fused_bias_act=cfg.fused_bias_act,
                    channels_last=cfg.channels_last,
                    upsample_border=cfg.upsample_border,
                )
            )
        self.blocks = nn.ModuleList(blocks)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        w_idx = 0
        for block in cast("list[SynthesisBlock]", self.blocks):
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode)
            w_idx += block.num_conv
        return cast(torch.Tensor, img)  # [N, img_channels, R, R]; there is always a block


class Generator(nn.Module):
    """z (and class) -> mapping -> ws -> synthesis -> image."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers, cfg.mapping_lr_multiplier, cfg.w_avg_beta
        )

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] one-hot, or None
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> torch.Tensor:  # [N, img_channels, R, R]
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)
