"""utils.gpu (gpu_unusable_reason): the one line on why torch cannot use the GPU nvidia-smi sees.

The decision (`explain`) is checked on given facts; nvidia-smi is a real program on PATH (a fake
shell script: no machine here has the real one), torch is the installed one, and the training
entry point prints the line before it falls back to the CPU preset.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from braingan.experiment.command import CPU_PRESET, train_arguments
from braingan.utils.gpu import (
    SmiGpu,
    TorchCuda,
    build_for_driver,
    explain,
    gpu_unusable_reason,
    nvidia_smi_gpus,
    parse_nvidia_smi,
    torch_cuda,
)
from helpers.runs import run_tool

H100 = "NVIDIA H100 80GB HBM3"
CPU_BUILD = TorchCuda("2.14.1+cpu", None, False, None)
CUDA13 = TorchCuda("2.14.1+cu130", "13.0", False, None)
TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version 12000). Please update your GPU driver by "
    "downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx"
)


def fake_nvidia_smi(folder: Path, body: str) -> Path:
    """<folder>/nvidia-smi: a shell script running `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return folder


@pytest.fixture
def smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Puts a fake nvidia-smi with the given body first on PATH."""

    def put(body: str) -> Path:
        folder = fake_nvidia_smi(tmp_path / "bin", body)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return folder

    return put


def test_parse_nvidia_smi_reads_name_and_driver_per_line():
    text = f"{H100}, 535.183.01\nNVIDIA A100-SXM4-40GB, 535.183.01\n\n"
    assert parse_nvidia_smi(text) == [SmiGpu(H100, "535.183.01"), SmiGpu("NVIDIA A100-SXM4-40GB", "535.183.01")]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_the_build_to_suggest_is_the_newest_the_driver_runs():
    assert build_for_driver("590.44.01") == "cu130"
    assert build_for_driver("580.65.06") == "cu130"
    assert build_for_driver("570.124.06") == "cu128"
    assert build_for_driver("560.35.03") == "cu126"
    assert build_for_driver("535.183.01") == "cu121"
    assert build_for_driver("525.60.13") == "cu121"  # any CUDA 12 build, through minor version compatibility
    assert build_for_driver("470.256.02") == "cu118"
    assert build_for_driver("440.33") is None


def test_nothing_to_say_without_a_listed_gpu_or_when_torch_uses_it():
    assert explain(None, CUDA13) is None  # no nvidia-smi, or it failed
    assert explain([], CUDA13) is None  # it lists no GPU
    assert explain([SmiGpu(H100, "590.44.01")], TorchCuda("2.14.1+cu130", "13.0", True, None)) is None


def test_a_cpu_only_build_is_named_with_the_build_for_the_driver():
    line = explain([SmiGpu(H100, "535.183.01")], CPU_BUILD)
    assert line == (
        f"nvidia-smi sees 1 GPU ({H100}, driver 535.183.01) but torch 2.14.1+cpu cannot use it: it is a CPU-only "
        "build; install a torch build for your driver: make install "
        "TORCH_INDEX=https://download.pytorch.org/whl/cu121 (README: Another CUDA build of torch)"
    )


def test_a_driver_too_old_for_the_build_names_the_driver_it_needs():
    gpus = [SmiGpu(H100, "525.60.13"), SmiGpu(H100, "525.60.13")]
    line = explain(gpus, TorchCuda("2.14.1+cu130", "13.0", False, TOO_OLD))
    assert line is not None and "\n" not in line
    assert line.startswith(f"nvidia-smi sees 2 GPUs ({H100}, driver 525.60.13) but torch 2.14.1+cu130 cannot use them")
    assert "this build needs driver >= 580.65.06 (CUDA 13.0)" in line
    assert line.endswith(
        "make install TORCH_INDEX=https://download.pytorch.org/whl/cu121 (README: Another CUDA build of torch)"
    )
    # The driver's version alone tells it too, whatever torch said (here: nothing)
    assert "needs driver >= 580.65.06" in explain(gpus, CUDA13)
    # A driver too old for every build
    old = explain([SmiGpu(H100, "440.33")], TorchCuda("2.4.1+cu121", "12.1", False, TOO_OLD))
    assert "needs driver >= 525.60.13 (CUDA 12.1); driver 440.33 runs no current torch build" in old


def test_hidden_devices_and_other_reasons():
    gpus = [SmiGpu(H100, "590.44.01")]
    hidden = explain(gpus, TorchCuda("2.14.1+cu130", "13.0", False, "No CUDA GPUs are available"), visible_devices="")
    assert hidden.endswith("cannot use it: CUDA_VISIBLE_DEVICES='' hides them from torch")
    said = explain(gpus, TorchCuda("2.14.1+cu130", "13.0", False, "CUDA unknown error - this may be due to ..."))
    assert said.endswith("cannot use it: torch says: CUDA unknown error - this may be due to ...")
    assert explain(gpus, CUDA13).endswith("cannot use it: torch (CUDA 13.0) finds no usable device")


def test_nvidia_smi_missing_failing_hanging_or_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert nvidia_smi_gpus() is None and gpu_unusable_reason() is None
    fake = fake_nvidia_smi(tmp_path / "failing", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    monkeypatch.setenv("PATH", str(fake))
    assert nvidia_smi_gpus() is None
    fake = fake_nvidia_smi(tmp_path / "hanging", "exec sleep 30")
    monkeypatch.setenv("PATH", str(fake))
    start = time.monotonic()
    assert nvidia_smi_gpus(timeout=0.5) is None
    assert time.monotonic() - start < 5
    check = '[ "$1" = --query-gpu=name,driver_version ] && [ "$2" = --format=csv,noheader ] || exit 1'
    fake = fake_nvidia_smi(tmp_path / "listing", f'{check}\necho "{H100}, 590.44.01"')
    monkeypatch.setenv("PATH", str(fake))
    assert nvidia_smi_gpus() == [SmiGpu(H100, "590.44.01")]


def test_torch_cuda_reports_the_installed_torch():
    facts = torch_cuda()
    assert (facts.version, facts.cuda, facts.available) == (
        torch.__version__,
        torch.version.cuda,
        torch.cuda.is_available(),
    )
    if torch.version.cuda is not None and not facts.available:
        assert facts.problem  # what torch.cuda.init() raised: no driver, no device ...


def test_gpu_unusable_reason_with_the_real_torch(smi_on_path):
    smi_on_path(f'echo "{H100}, 525.60.13"')
    line = gpu_unusable_reason()
    if torch.cuda.is_available():  # on a GPU machine this torch uses its GPU: nothing to say
        assert line is None
        return
    assert line is not None and "\n" not in line
    assert line.startswith(
        f"nvidia-smi sees 1 GPU ({H100}, driver 525.60.13) but torch {torch.__version__} cannot use it: "
    )
    if torch.version.cuda is None:
        assert "CPU-only build" in line
    elif int(torch.version.cuda.split(".")[0]) >= 13:
        assert f"this build needs driver >= 580.65.06 (CUDA {torch.version.cuda})" in line


def test_train_warns_only_when_it_chooses_the_cpu_preset(smi_on_path):
    smi_on_path(f'echo "{H100}, 525.60.13"')
    notes: list[str] = []
    args = train_arguments(["kimg=1"], cuda=False, warn=notes.append)
    assert CPU_PRESET in args
    if torch.cuda.is_available():
        assert notes == []
        return
    assert len(notes) == 1 and notes[0].startswith("nvidia-smi sees 1 GPU")
    assert notes[0].endswith("going on with the CPU preset (experiment=cpu; pass it yourself to silence this line)")
    notes.clear()
    train_arguments(["trainer=cpu", "kimg=1"], cuda=False, warn=notes.append)  # the hardware chosen
    train_arguments(["experiment=cpu", "kimg=1"], cuda=False, warn=notes.append)
    train_arguments(["kimg=1"], cuda=False, local_rank=1, warn=notes.append)
    train_arguments(["kimg=1"], cuda=True, warn=notes.append)
    assert notes == []


@pytest.mark.slow
def test_the_train_entry_point_prints_the_line_and_goes_on(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("torch uses the GPU here: nothing to say")
    folder = fake_nvidia_smi(tmp_path / "bin", f'echo "{H100}, 525.60.13"')
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    proc = run_tool("train", ["--help"], cwd=tmp_path, timeout=120, env=env)  # composes, prints help, trains nothing
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train: nvidia-smi sees 1 GPU"), proc.stderr
    assert "going on with the CPU preset" in lines[0]
    # A usage error: its own one line alone
    proc = run_tool("train", ["model.r1_gama=1"], cwd=tmp_path, timeout=120, env=env)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [proc.stderr.strip()]
    assert "nvidia-smi" not in proc.stderr
