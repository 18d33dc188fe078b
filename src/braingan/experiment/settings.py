"""Composed config -> the run's datamodule and typed configs (NetworkConfig, TrainConfig).

The config's keys are the dataclasses' fields: `model:` holds NetworkConfig and TrainConfig fields
(plus `conditional`, which decides c_dim from the data), `speed:` holds fields of both as well,
`augment:` is AugmentConfig, `dataset:` holds SliceDataModule's arguments. Each dataclass is built
as `Cls(**its keys of the node, **derived values)`; a key that belongs to none of them is refused
in one line naming it (`check_keys`), so a misspelt key in a preset cannot be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from ..data.datamodule import SliceDataModule
from ..nn.config import NetworkConfig
from ..training.config import AugmentConfig, TrainConfig
from ..utils.errors import UsageError

# Keys of `model:` that are not dataclass fields but decide one (c_dim from the data's classes).
MODEL_INPUTS = ("conditional",)
RESOLUTIONS = (32, 64, 128, 256, 512, 1024)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _plain(node) -> dict[str, Any]:
    """A config node as a plain dict, interpolations resolved."""
    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))


def _pick(values: dict[str, Any], cls) -> dict[str, Any]:
    """The entries of `values` whose keys are fields of `cls`."""
    names = _fields(cls)
    return {k: v for k, v in values.items() if k in names}


def _dataset_arguments() -> set[str]:
    return set(inspect.signature(SliceDataModule.__init__).parameters) - {"self"}


def check_keys(cfg: DictConfig) -> None:
    """Refuses a key of model/speed/augment/dataset that no dataclass or datamodule argument has, naming it."""
    groups = {
        "model": _fields(NetworkConfig) | _fields(TrainConfig) | set(MODEL_INPUTS),
        "speed": _fields(NetworkConfig) | _fields(TrainConfig),
        "augment": _fields(AugmentConfig),
        "dataset": _dataset_arguments() | {"name"},
    }
    for node, known in groups.items():
        for key in cfg[node]:
            if key not in known:
                near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                hint = f"; did you mean {node}.{near[0]}?" if near else ""
                raise UsageError(f"{node}.{key}: no such setting{hint}")


def optional_path(value) -> str | None:
    """A path setting: None/'' = none, else the path with ~ expanded."""
    return None if value is None or str(value) == "" else str(Path(os.path.expanduser(str(value))))


def build_datamodule(cfg: DictConfig, world_size: int = 1, manifest_path: Path | None = None) -> SliceDataModule:
    """The run's SliceDataModule: the `dataset:` node's keys are its arguments; each process takes batch / world_size."""
    ds = _plain(cfg.dataset)
    name = ds.pop("name")
    if isinstance(ds.get("classes"), str):  # dataset.classes=AD means [AD]
        ds["classes"] = [ds["classes"]]
    if ds.get("classes") is not None:
        ds["classes"] = [str(c) for c in ds["classes"]]
    for key in ("root", "cache_dir"):
        ds[key] = optional_path(ds.get(key))
    return SliceDataModule(
        **ds,
        demo=name == "demo",
        resolution=cfg.resolution,
        img_channels=cfg.img_channels,
        batch_size=cfg.batch_size // world_size,  # check_settings: divisible
        num_workers=cfg.trainer.num_workers,
        seed=cfg.seed,
        manifest_path=manifest_path,
    )


def conditioning_classes(conditional, num_classes: int) -> int:
    """c_dim for model.conditional = auto | true | false and the classes found in the data."""
    mode = str(conditional).lower()
    if mode not in ("auto", "true", "false"):
        raise UsageError(f"model.conditional={conditional} must be auto, true or false")
    if mode == "true" and num_classes < 2:
        raise UsageError(
            f"model.conditional=true but the training data has {num_classes} class; use labelled data "
            "(dataset=adni, or dataset=folder dataset.labels=true) with two or more classes"
        )
    if mode == "false" or num_classes < 2:
        return 0
    return num_classes


def resolve_channels_last(setting, accelerator: str) -> bool:
    """speed.channels_last: auto = on when training on CUDA (where cuDNN has NHWC kernels), off on the CPU."""
    if str(setting).lower() == "auto":
        return str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    return bool(setting)


def build_configs(cfg: DictConfig, c_dim: int = 0, precision: str = "32-true") -> tuple[NetworkConfig, TrainConfig]:
    """The typed configs of a run; `precision` (the trainer's) resolves model.conv_clamp=auto.

    model.r1_gamma=auto and model.ema_kimg=auto resolve from the resolution and the global batch.
    """
    check_keys(cfg)
    m, speed = _plain(cfg.model), _plain(cfg.speed)
    net = NetworkConfig(
        **{
            **_pick(m, NetworkConfig),
            **_pick(speed, NetworkConfig),
            "img_resolution": cfg.resolution,
            "img_channels": cfg.img_channels,
            "c_dim": c_dim,
            "conv_clamp": NetworkConfig.resolve_conv_clamp(m["conv_clamp"], precision, m["num_fp16_res"]),
            "channels_last": resolve_channels_last(speed["channels_last"], cfg.trainer.accelerator),
        }
    )
    train = TrainConfig(
        **{
            **_pick(m, TrainConfig),
            **_pick(speed, TrainConfig),
            "batch_size": cfg.batch_size,
            "batch_gpu": cfg.batch_gpu,
            "kimg": cfg.kimg,
            "r1_gamma": TrainConfig.resolve_r1_gamma(m["r1_gamma"], cfg.resolution, cfg.batch_size),
            "ema_kimg": TrainConfig.resolve_ema_kimg(m["ema_kimg"], cfg.batch_size),
            "augment": AugmentConfig(**_plain(cfg.augment)),
            "max_nonfinite": cfg.max_nonfinite,
            "num_samples": cfg.schedule.num_samples,
        }
    )
    return net, train


def data_and_configs(
    cfg: DictConfig, world_size: int = 1, manifest_path: Path | None = None
) -> tuple[SliceDataModule, NetworkConfig, TrainConfig]:
    """The run's datamodule, set up, and its typed configs (training, make bench, make guard).

    The data decides the number of classes that the model stores; `manifest_path` gets the run's
    manifest.csv (None: nothing is written).
    """
    dm = build_datamodule(cfg, world_size, manifest_path)
    dm.prepare_data()
    dm.setup("fit")
    c_dim = conditioning_classes(cfg.model.conditional, dm.num_classes)
    net, train_cfg = build_configs(cfg, c_dim, str(cfg.trainer.precision))
    return dm, net, train_cfg


def check_settings(cfg: DictConfig, processes: int) -> None:
    """Refuses, in one line, settings that cannot train, before any data is decoded or any file written."""
    check_keys(cfg)
    resolution, batch, kimg = cfg.resolution, cfg.batch_size, cfg.kimg
    if not _is_int(resolution) or resolution not in RESOLUTIONS:
        near = sorted(RESOLUTIONS, key=lambda r: (abs(r - resolution), r))[:2] if _is_number(resolution) else []
        hint = f"; nearest: {' or '.join(map(str, near))}" if near else ""
        raise UsageError(f"resolution={resolution} must be one of {', '.join(map(str, RESOLUTIONS))}{hint}")
    if not _is_int(batch) or batch < 1:
        raise UsageError(f"batch_size={batch} must be a whole number >= 1 (the global batch over all processes)")
    if not _is_number(kimg) or not (kimg > 0 and math.isfinite(kimg)):
        raise UsageError(f"kimg={kimg} must be a number > 0 (the training length in thousands of real images)")
    if processes < 1:
        raise UsageError(f"trainer.devices x trainer.num_nodes = {processes}: need at least one process")
    if batch % processes:
        raise UsageError(
            f"batch_size={batch} is not divisible by the {processes} processes (trainer.devices x trainer.num_nodes); "
            f"each takes an equal share of the global batch: use a multiple of {processes}"
        )
    per_process, group = batch // processes, cfg.model.mbstd_group_size
    if not _is_int(group) or group < 0:
        raise UsageError(f"model.mbstd_group_size={group} must be a whole number >= 0 (0 = no minibatch std)")
    if group > 0 and per_process % min(group, per_process):
        share = f" ({per_process} per process)" if processes > 1 else ""
        raise UsageError(
            f"batch_size={batch}{share} is not divisible by the minibatch-std group size model.mbstd_group_size={group}; "
            f"use a multiple of {group} images per process"
        )
    batch_gpu = cfg.batch_gpu
    if batch_gpu is not None:
        if not _is_int(batch_gpu) or batch_gpu < 1 or per_process % batch_gpu:
            raise UsageError(
                f"batch_gpu={batch_gpu} must be a whole number that divides the {per_process} images per process "
                f"(batch_size={batch} over {processes} processes), or null"
            )
        if group > 0 and batch_gpu % min(group, batch_gpu):
            raise UsageError(
                f"batch_gpu={batch_gpu} is not divisible by the minibatch-std group size model.mbstd_group_size={group}"
            )
    for key in ("log_kimg", "image_kimg", "last_kimg", "snapshot_kimg", "fid_kimg"):
        value = cfg.schedule.get(key)
        if value is not None and (not _is_number(value) or value < 0):
            raise UsageError(f"schedule.{key}={value} must be a number of kimg >= 0 (0 or null = never)")
    if not _is_int(cfg.max_nonfinite) or cfg.max_nonfinite < 1:
        raise UsageError(f"max_nonfinite={cfg.max_nonfinite} must be a whole number >= 1")
    for key in ("init_strict", "init_keep_ada"):
        if not isinstance(cfg.get(key), bool):
            raise UsageError(f"{key}={cfg.get(key)} must be true or false")
    freeze = cfg.model.get("freeze_d", 0)
    if not _is_int(freeze) or freeze < 0:
        raise UsageError(
            f"model.freeze_d={freeze} must be a whole number >= 0 (D blocks frozen from the highest resolution)"
        )


def flat_settings(cfg: DictConfig) -> dict:
    """The resolved config as {'a/b/c': scalar}: what checkpoints store as the run's settings."""
    return flatten(_plain(cfg))


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested dict as {'a/b/c': scalar}; values other than int, float, str and bool as their str()."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
