"""The device an inference tool runs on."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when a CUDA device is visible, else cpu; anything else as given (cpu, cuda:1)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
