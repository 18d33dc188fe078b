"""Typed training hyperparameters, stored in every checkpoint beside the NetworkConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..utils.errors import UsageError
from ..utils.serial import DictSerializable


@dataclass
class AugmentConfig(DictSerializable):
    """ADA settings: the `augment:` node of conf/train.yaml, key for key."""

    mode: str = "ada"  # 'ada' (p steered toward target), 'fixed' (constant p) or 'none'
    p: float = 0.0  # initial p for ada, the constant p for fixed
    target: float = 0.6  # ADA target of E[sign(D(real))]
    interval: int = 4  # adjust p every N steps
    kimg: float = 500.0  # p can move from 0 to 1 within this many kimg
    pipe: dict = field(default_factory=dict)  # per-transform strengths for nn.augment.AugmentPipe


# TrainConfig keys of checkpoints written before AugmentConfig (format 1) -> AugmentConfig fields.
_FLAT_AUGMENT_KEYS = {
    "augment": "mode",
    "augment_p": "p",
    "ada_target": "target",
    "ada_interval": "interval",
    "ada_kimg": "kimg",
    "augment_kwargs": "pipe",
}


@dataclass
class TrainConfig(DictSerializable):
    batch_size: int = 32  # global batch: images per step summed over all processes
    batch_gpu: int | None = None  # images per forward pass per process (gradient accumulation); None = its whole share
    kimg: float = 5000.0  # training length in thousands of real images shown to D
    lr_g: float = 0.0025  # Adam learning rate of G (before the lazy-regularization correction)
    lr_d: float = 0.0025  # Adam learning rate of D (before the lazy-regularization correction)
    beta1: float = 0.0  # Adam beta1
    beta2: float = 0.99  # Adam beta2
    r1_gamma: float = 1.0  # R1 weight gamma, resolved (model.r1_gamma=auto: `resolve_r1_gamma`); 0 = off
    r1_interval: int = 16  # lazy R1: every N D steps (0 = every step, not lazy)
    pl_weight: float = 2.0  # path-length regularization weight; 0 = off
    pl_interval: int = 4  # lazy path length: every N G steps
    pl_decay: float = 0.01  # decay of the running mean of path lengths
    pl_batch_shrink: int = 2  # path-length batch = batch / this
    style_mixing: float = 0.9  # probability of mixing two latents in a training batch
    freeze_d: int = 0  # Freeze-D (Mo et al. 2020): D's first N blocks from the highest resolution are not trained
    ema_kimg: float = 10.0  # half-life of the generator EMA in kimg, resolved (model.ema_kimg=auto: `resolve_ema_kimg`)
    ema_rampup: float | None = 0.05  # EMA half-life capped at cur_nimg * this; None = no ramp-up
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # ADA (the `augment:` node)
    max_nonfinite: int = 10  # stop after this many steps in a row with a non-finite loss
    num_samples: int = 16  # images in the fixed-latent sample grid
    sample_seed: int = 123  # seed of the fixed sample latents and labels
    compile: bool = False  # torch.compile the G and D forwards of the main phases (regularizers stay eager)
    compile_mode: str = "default"  # torch.compile mode
    compile_backend: str = "inductor"  # torch.compile backend (aot_eager: no code generation, for CPU tests)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Also reads the flat keys of checkpoints written before AugmentConfig (total_kimg, augment_p, ada_* ...)."""
        d = dict(d)
        if "total_kimg" in d:
            d.setdefault("kimg", d.pop("total_kimg"))
        augment = d.get("augment")
        if not isinstance(augment, (dict, AugmentConfig)):  # format 1: augment was the mode string
            flat = {new: d.pop(old) for old, new in _FLAT_AUGMENT_KEYS.items() if old in d}
            d["augment"] = flat
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig.from_dict(d["augment"])
        return super().from_dict(d)

    @staticmethod
    def resolve_r1_gamma(setting, resolution: int, batch_size: int) -> float:
        """model.r1_gamma = auto | number: auto = 0.0002 R^2 / batch (StyleGAN2-ADA's auto configuration).

        `batch_size` is the global batch: 0.4096 at 256x256 and batch 32, 0.2048 at batch 64.
        """
        if str(setting).lower() == "auto":
            return 0.0002 * resolution**2 / batch_size
        return _number("model.r1_gamma", setting)

    @staticmethod
    def resolve_ema_kimg(setting, batch_size: int) -> float:
        """model.ema_kimg = auto | number: auto = batch * 10 / 32 kimg (StyleGAN2-ADA's auto configuration).

        `batch_size` is the global batch: 10 kimg at batch 32, 20 at batch 64.
        """
        if str(setting).lower() == "auto":
            return batch_size * 10 / 32
        return _number("model.ema_kimg", setting)


def _number(key: str, setting) -> float:
    """A finite number >= 0 (also given as a string), else a one-line error naming `key`."""
    try:
        value = float(setting) if not isinstance(setting, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{key}={setting!r} must be auto or a number >= 0")
    return value
