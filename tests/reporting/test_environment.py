"""reporting.environment: the versions and the device a result records, against what is installed."""

from __future__ import annotations

import platform
from importlib import metadata

import pytest
import torch

from braingan.reporting.environment import CORE_PACKAGES, device_info, versions


def test_versions_name_what_is_installed_and_none_for_what_is_not():
    found = versions(("torch", "numpy", "no-such-package-braingan-test"))
    assert found == {
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "torch": metadata.version("torch"),
        "numpy": metadata.version("numpy"),
        "no-such-package-braingan-test": None,
    }
    assert set(versions()) == {"python", "cuda", *CORE_PACKAGES}


def test_device_info_of_the_cpu():
    info = device_info("cpu")
    assert info["type"] == "cpu" and info["threads"] == torch.get_num_threads()
    assert isinstance(info["name"], str) and info["name"]
    assert device_info(torch.device("cpu")) == info


@pytest.mark.gpu
def test_device_info_of_a_cuda_device():
    info = device_info("cuda:0")
    assert info == {
        "type": "cuda",
        "name": torch.cuda.get_device_name(0),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "count": torch.cuda.device_count(),
    }
