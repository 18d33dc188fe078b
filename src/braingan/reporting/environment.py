"""Facts about the software and the device a result was computed with, for the JSON files of the tools.

`versions()` names the Python, CUDA and package versions (None for a package that is not
installed); `device_info(device)` the accelerator or CPU model. Both only read what is installed.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

import torch

CORE_PACKAGES = ("braingan", "torch", "pytorch-lightning")  # what every result depends on


def versions(packages: Sequence[str] = CORE_PACKAGES) -> dict[str, str | None]:
    """{"python": ..., "cuda": torch's CUDA version (None on a CPU build), <package>: version or None}."""
    out: dict[str, str | None] = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info(device: torch.device | str) -> dict:
    """The device a computation ran on: a CUDA device's name, CUDA/cuDNN versions and device count,
    or the CPU's model name (from /proc/cpuinfo where there is one) and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "count": torch.cuda.device_count(),
        }
    if device.type != "cpu":  # another accelerator (mps, xpu ...): its type is all that is known here
        return {"type": device.type, "name": str(device)}
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return {"type": "cpu", "name": name, "threads": torch.get_num_threads()}
