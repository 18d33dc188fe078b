"""Rebuild networks from a checkpoint file alone (no Hydra, no config files)."""
from __future__ import annotations

import os

import torch

from .nn.config import NetworkConfig
from .nn.synthesis import Generator


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict. Our checkpoints hold RNG states, so they are not weights-only files."""
    return torch.load(path, map_location=map_location, weights_only=False)


def load_generator(path: str | os.PathLike, which: str = "G_ema", map_location: str | torch.device = "cpu") -> Generator:
    """The generator stored in a training checkpoint (`G_ema` by default, or `G`), in eval mode."""
    ckpt = load_checkpoint(path, map_location)
    cfg = NetworkConfig.from_dict(ckpt["hyper_parameters"]["net"])
    G = Generator(cfg)
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    G.load_state_dict(state)
    return G.eval().requires_grad_(False)


def checkpoint_kimg(path: str | os.PathLike) -> float:
    """Training time stored in a checkpoint, in kimg (the file is memory-mapped: nothing else is read)."""
    return float(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["braingan"]["cur_nimg"]) / 1000.0


def load_data_info(path: str | os.PathLike) -> dict:
    """What a checkpoint knows about its training data, without building any network.

    Returns {"class_names": [...] (label order; [] when unlabelled), "geometry": Geometry or
    None (checkpoints written before the fit policy existed)}. The file is memory-mapped, so
    only the small hyperparameter dict is read from disk.
    """
    from .data.fit import Geometry

    ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    data = ckpt.get("hyper_parameters", {}).get("data") or {}
    geometry = data.get("geometry")
    return {
        "class_names": [str(name) for name in data.get("class_names") or []],
        "geometry": Geometry.from_dict(geometry) if geometry else None,
    }
