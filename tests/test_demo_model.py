"""The demo model shipped in models/demo: whole in git, its checksums right, and the README's command
draws brain slices with it on a machine that has nothing but the clone and `make install`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braingan.export import CARD, CONFIG, read_export_info
from helpers.runs import REPO

DEMO = REPO / "models" / "demo"


def readme_demo_command() -> str:
    """The `make generate CKPT=models/demo ...` line of the README's "What it makes" section."""
    section = (REPO / "README.md").read_text().split("### What it makes", 1)[1].split("\n## ", 1)[0]
    lines = [
        line.split("  #")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.startswith("make generate CKPT=models/demo")
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_demo_model_is_tracked_whole_and_its_card_has_its_numbers() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "models/demo"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    info = read_export_info(DEMO)  # every checksum of config.json verified
    assert {f"models/demo/{name}" for name in [*info.files, CONFIG]} <= set(tracked)
    assert info.resolution >= 64 and info.data["dataset"] == "demo" and info.kimg > 0
    size = sum((DEMO / name).stat().st_size for name in info.files) + (DEMO / CONFIG).stat().st_size
    assert size < 10e6, f"{size / 1e6:.1f} MB is more than a few MB to keep in git"
    card = (DEMO / CARD).read_text()
    assert "Research only, not for diagnosis" in card and "Not evaluated" not in card
    assert "| generated vs real |" in card and "not audited" not in card


@pytest.mark.slow
def test_the_readme_command_draws_brain_slices_from_the_demo_model_on_a_fresh_machine(tmp_path: Path) -> None:
    command = readme_demo_command()
    seeds = re.search(r"seeds=(\d+)-(\d+)", command)
    assert seeds, command
    out = tmp_path / "slices"
    assert command.endswith('"')
    command = command[:-1] + f' out={shlex.quote(str(out))}"'  # the README writes into models/demo/generate
    empty = {"BRAINGAN_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}  # no caches, no demo data
    done = subprocess.run(
        command, shell=True, cwd=REPO, env={**os.environ, **empty}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = sorted((out / "images").glob("seed*.png"))
    assert len(files) == int(seeds[2]) - int(seeds[1]) + 1
    slices = np.stack([np.asarray(Image.open(f), dtype=np.float64) for f in files])  # [N, H, W] levels 0..255
    assert slices.shape[1:] == (256, 256)  # the demo data's native 256x256
    assert (slices.std(axis=(1, 2)) > 10).all()  # not constant
    assert np.abs(slices[1:] - slices[:1]).mean(axis=(1, 2)).min() > 1  # each seed another slice
    h, w = slices.shape[1:]
    centre = slices[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(axis=(1, 2))
    border = np.concatenate([slices[:, :, : w // 16], slices[:, :, -w // 16 :]], axis=2).mean(axis=(1, 2))
    assert (centre > border + 20).all()  # a head in dark air, as MRI slices are
    assert (out / "grid.png").is_file()
    read_export_info(DEMO)  # the shipped folder is as it was
    assert not (tmp_path / "cache" / "demo").exists()  # drawing needs no data set
