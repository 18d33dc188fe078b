"""Why torch cannot use the GPU a machine has: one line for the user, or None when there is nothing to say.

`gpu_unusable_reason()` asks nvidia-smi which GPUs the machine has (a 5 s limit; a missing,
failing or hanging nvidia-smi means nothing to say) and, when it lists one that torch cannot use,
names the reason: a CPU-only torch build, a driver too old for the build's CUDA version (with the
build that fits the driver), CUDA_VISIBLE_DEVICES hiding the GPUs, or what torch itself said.
`explain` is the same decision as a pure function of those facts, so that it is testable anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

NVIDIA_SMI_QUERY = ("--query-gpu=name,driver_version", "--format=csv,noheader")
NVIDIA_SMI_TIMEOUT_S = 5.0
TORCH_INDEX = "https://download.pytorch.org/whl"  # the PyTorch wheel index, one folder per build: cu126, cu128 ...
README_SECTION = "README: Another CUDA build of torch"

# The oldest Linux driver that runs any build of a CUDA major version (CUDA minor version compatibility).
MIN_DRIVER_FOR_CUDA_MAJOR = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# The PyTorch builds (newest first) with the driver each one's CUDA release requires (NVIDIA's release notes;
# cu121 and cu118 from the oldest driver of their major, through minor version compatibility): the newest
# build whose driver the machine has is the one to suggest.
BUILD_FOR_DRIVER = (
    ("cu130", "580.65.06"),
    ("cu129", "575.51.03"),
    ("cu128", "570.26"),
    ("cu126", "560.28.03"),
    ("cu124", "550.54.14"),
    ("cu121", "525.60.13"),
    ("cu118", "450.80.02"),  # CUDA 11.x runs from driver 450.80.02 on
)


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as nvidia-smi lists it."""

    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    driver: str  # the driver version, e.g. "535.183.01"


@dataclass(frozen=True)
class TorchCuda:
    """What the installed torch says about CUDA."""

    version: str  # torch.__version__, e.g. "2.14.1+cu130"
    cuda: str | None  # torch.version.cuda: the CUDA version of the build; None for a CPU-only build
    available: bool  # torch.cuda.is_available()
    problem: str | None  # the first line of what torch warned or raised when it tried CUDA; None if nothing


def parse_nvidia_smi(text: str) -> list[SmiGpu]:
    """The GPUs of `nvidia-smi --query-gpu=name,driver_version --format=csv,noheader` output."""
    gpus = []
    for line in text.splitlines():
        name, sep, driver = line.rpartition(",")
        if sep and name.strip() and driver.strip():
            gpus.append(SmiGpu(name.strip(), driver.strip()))
    return gpus


def nvidia_smi_gpus(timeout: float = NVIDIA_SMI_TIMEOUT_S) -> list[SmiGpu] | None:
    """The GPUs nvidia-smi lists; None when there is no nvidia-smi on PATH, or it fails or takes over `timeout` s."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse_nvidia_smi(proc.stdout)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def torch_cuda() -> TorchCuda:
    """The installed torch's CUDA facts. Where a CUDA build sees no device, torch.cuda.init() is tried once to
    get its reason (it raises, it creates no CUDA context; the process goes on without CUDA)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    problem = next((_first_line(str(w.message)) for w in caught), None)
    if not available and torch.version.cuda is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.cuda.init()
        except Exception as error:  # RuntimeError (driver, no device) and whatever a broken install raises
            problem = _first_line(str(error)) or problem
    return TorchCuda(torch.__version__, torch.version.cuda, available, problem)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.strip().split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def build_for_driver(driver: str) -> str | None:
    """The newest PyTorch build (cu130, cu128 ...) that the driver `driver` runs; None if it runs none of them."""
    return next((build for build, needs in BUILD_FOR_DRIVER if _version(driver) >= _version(needs)), None)


def _install_hint(driver: str) -> str:
    build = build_for_driver(driver)
    if build is None:
        return f"driver {driver} runs no current torch build: update the NVIDIA driver"
    return f"install a torch build for your driver: make install TORCH_INDEX={TORCH_INDEX}/{build} ({README_SECTION})"


def explain(gpus: list[SmiGpu] | None, torch_facts: TorchCuda, visible_devices: str | None = None) -> str | None:
    """One line on why torch cannot use the GPUs nvidia-smi lists (`gpus`), or None: no GPU listed, or torch uses it.

    `visible_devices` is the value of CUDA_VISIBLE_DEVICES (None: not set).
    """
    if not gpus or torch_facts.available:
        return None
    names = sorted({g.name for g in gpus})
    driver = gpus[0].driver
    seen = f"nvidia-smi sees {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)}, driver {driver})"
    head = f"{seen} but torch {torch_facts.version} cannot use {'them' if len(gpus) > 1 else 'it'}"
    if torch_facts.cuda is None:
        return f"{head}: it is a CPU-only build; {_install_hint(driver)}"
    problem = torch_facts.problem or ""
    major = _version(torch_facts.cuda)[0]
    needs = MIN_DRIVER_FOR_CUDA_MAJOR.get(major)
    too_old = "too old" in problem.lower() or (needs is not None and _version(driver) < _version(needs))
    if too_old:
        floor = f"driver >= {needs}" if needs else "a newer driver"
        return f"{head}: this build needs {floor} (CUDA {torch_facts.cuda}); {_install_hint(driver)}"
    if visible_devices is not None and ("no cuda gpus" in problem.lower() or not problem):
        return f"{head}: CUDA_VISIBLE_DEVICES={visible_devices!r} hides them from torch"
    if problem:
        return f"{head}: torch says: {problem}"
    return f"{head}: torch (CUDA {torch_facts.cuda}) finds no usable device"


def gpu_unusable_reason(
    timeout: float = NVIDIA_SMI_TIMEOUT_S, gpus: list[SmiGpu] | None | Literal["ask"] = "ask"
) -> str | None:
    """One line when nvidia-smi sees a GPU that torch cannot use, with the reason and what to do; else None.

    Costs nothing on a machine without nvidia-smi; runs nvidia-smi (at most `timeout` s) otherwise,
    unless the caller passes what nvidia_smi_gpus() returned as `gpus`, and looks at torch's CUDA
    state only when nvidia-smi lists a GPU.
    """
    if gpus == "ask":
        gpus = nvidia_smi_gpus(timeout)
    if not gpus:
        return None
    return explain(gpus, torch_cuda(), os.environ.get("CUDA_VISIBLE_DEVICES"))
