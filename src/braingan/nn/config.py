"""Typed hyperparameters of the networks, stored inside every checkpoint.

A checkpoint rebuilds its generator from this dataclass alone: no Hydra, no config files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..utils.errors import UsageError
from ..utils.serial import DictSerializable

REDUCED_PRECISIONS = ("16-mixed", "bf16-mixed", "16", "bf16")  # Lightning precisions that autocast to 16 bits

# Properties of the trained weights, not settings: a resumed run or a loaded checkpoint computes as
# it was trained. Each with the value that checkpoints written before its key existed were trained with.
TRAINED_PROPERTIES = {"upsample_border": "zero", "d_mapping_layers": 0}


@dataclass
class NetworkConfig(DictSerializable):
    img_resolution: int = 256  # output height and width in pixels, power of two in 32..1024
    img_channels: int = 1  # 1 = grayscale MRI, 3 = RGB
    z_dim: int = 512  # latent z dimensionality
    w_dim: int = 512  # intermediate latent w dimensionality
    c_dim: int = 0  # number of classes for a conditional model; 0 = unconditional
    mapping_layers: int = 8  # depth of the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    d_mapping_layers: int = (
        8  # conditional D: layers of its class mapping network (StyleGAN2-ADA: 8); 0 = embedding only
    )
    channel_base: int = 32768  # channels at resolution r are min(channel_base // r, channel_max)
    channel_max: int = 512  # upper bound on the channels of any layer
    conv_clamp: float | None = None  # clamp conv outputs to +-this (256 for FP16); None = off
    num_fp16_res: int = 4  # highest resolutions of G and D that compute in the autocast dtype (FP16/BF16); 0 = all FP32
    mbstd_group_size: int = 4  # minibatch standard deviation group size
    mbstd_num_channels: int = 1  # features of the minibatch standard deviation layer
    fused_modconv: bool = False  # grouped modulated convolution (True) or scale activations (False, faster to train)
    w_avg_beta: float = 0.995  # decay of the tracked average of w
    # How the same weights compute (speed only; a checkpoint loads under any of them):
    fused_upconv: bool = True  # up-sampling modulated conv as transposed conv + FIR (False: zero-insert, FIR, conv)
    fused_bias_act: bool = True  # gains, noise and bias folded into fused multiply-adds (False: one op each)
    channels_last: bool = False  # NHWC memory format for activations and conv weights (fast on GPUs)
    # G's up-sampling convs: "full" = the conv sees the filtered signal past the edge (StyleGAN2);
    # "zero" = zero padding after up-sampling (checkpoints written before this key existed).
    upsample_border: str = "full"

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or 2 ** int(round(math.log2(r))) != r:
            raise UsageError(f"img_resolution must be a power of two, got {r}")
        if self.img_channels not in (1, 3):
            raise UsageError(f"img_channels must be 1 or 3, got {self.img_channels}")
        if self.channel_base // r < 1:
            raise UsageError(f"channel_base={self.channel_base} leaves no channels at {r}x{r}; use at least {r}")
        if self.num_fp16_res < 0:
            raise UsageError(f"num_fp16_res must be >= 0, got {self.num_fp16_res}")
        if self.d_mapping_layers < 0:
            raise UsageError(f"d_mapping_layers must be >= 0, got {self.d_mapping_layers}")
        if self.upsample_border not in ("full", "zero"):
            raise UsageError(f"upsample_border must be full or zero, got {self.upsample_border!r}")
        if self.conv_clamp is not None and not (isinstance(self.conv_clamp, (int, float)) and self.conv_clamp > 0):
            raise UsageError(f"conv_clamp must be a positive number or None, got {self.conv_clamp!r}")

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        # A checkpoint from before a trained property's key keeps the networks it was trained with
        # (zero-padded up-sampling; D's class embedding without a mapping network).
        return super().from_dict({**TRAINED_PROPERTIES, **d})

    def trained_like(self, saved: NetworkConfig) -> NetworkConfig:
        """This config with `saved`'s TRAINED_PROPERTIES: what a run resumed from `saved`'s weights computes with."""
        return dataclasses.replace(self, **{key: getattr(saved, key) for key in TRAINED_PROPERTIES})

    @property
    def resolution_log2(self) -> int:
        return int(round(math.log2(self.img_resolution)))

    def channels_at(self, res: int) -> int:
        """Feature channels of the layers working at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def reduced_precision_at(self, res: int) -> bool:
        """Whether the G/D block working at resolution `res` computes in the autocast dtype.

        The `num_fp16_res` highest resolutions do (StyleGAN2-ADA, mixed precision), never below
        8x8: the 4x4 block, the mapping network and D's epilogue always compute in FP32.
        """
        if self.num_fp16_res == 0:
            return False
        return res >= max(2 ** (self.resolution_log2 + 1 - self.num_fp16_res), 8)

    @staticmethod
    def resolve_conv_clamp(setting, precision: str | int = "32-true", num_fp16_res: int = 4) -> float | None:
        """conv_clamp for a model config value `auto` | null | number and the trainer's precision.

        `auto` = 256 (the StyleGAN2-ADA value) when some blocks compute in 16 bits, i.e. under a
        16-bit mixed trainer precision with num_fp16_res > 0; otherwise None (no clamp).
        """
        if setting is None or str(setting).lower() in ("null", "none"):
            return None
        if str(setting).lower() == "auto":
            return 256.0 if str(precision) in REDUCED_PRECISIONS and num_fp16_res > 0 else None
        try:
            return float(setting)
        except (TypeError, ValueError):
            raise UsageError(f"conv_clamp={setting!r} must be auto, null or a number") from None

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (one per conv layer plus the last ToRGB)."""
        return 2 * self.resolution_log2 - 2
