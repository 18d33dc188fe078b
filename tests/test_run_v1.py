"""A run folder written before the experiment layer (tests/fixtures/run_v1/) still loads, evaluates,
generates and resumes, and the same command trains the same weights bit for bit on the CPU.

The training step's arithmetic changed once since the fixture was written (the sync-free step:
fused Adam, ADA's p moved on the device, augmentation drawn for every sample also at p = 0), so
the weights that command trains are pinned by their digests in expected.json ("train_weights",
recorded by the code of that change), not by the fixture's own checkpoint.

tests/fixtures/make_run_v1.py wrote the folder with the code of commit 653fc40 through the real
entry points, and kept in expected.json what its eval and generate computed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from braingan.training.distributed import tensor_digest
from helpers.runs import REPO, run_tool

FIXTURE = REPO / "tests" / "fixtures" / "run_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def old_run(tmp_path, demo_root) -> Path:
    """A copy of the fixture run whose manifest points at this session's demo set (the same 5 subjects)."""
    run = tmp_path / "old_run"
    shutil.copytree(FIXTURE, run)
    manifest = run / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(EXPECTED["DATA_ROOT"], str(demo_root)))
    return run


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from braingan.checkpoint import read_checkpoint

    return read_checkpoint(path)["state_dict"]


@pytest.mark.slow
def test_old_run_evaluates_as_before(old_run, tmp_path):
    out = tmp_path / "eval"
    proc = run_tool(
        "eval",
        [
            f"ckpt={old_run / 'checkpoints' / 'last.ckpt'}",
            f"cache_dir={tmp_path / 'cache'}",
            f"out={out}",
            *EXPECTED["eval"],
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for part in ("metrics", "floor"):
        for key, value in EXPECTED["metrics"][part].items():
            assert metrics[part][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (part, key)
    # Metrics added since the fixture (density/coverage, MS-SSIM diversity) come on top and leave the old ones as they were.
    for part in ("metrics", "floor"):
        block = metrics[part]
        assert block["density"] >= 0.0 and 0.0 <= block["coverage"] <= 1.0, part
        assert 0.0 <= block["ms_ssim_gen"] <= 1.0 and 0.0 <= block["ms_ssim_real"] <= 1.0, part
        assert block["ms_ssim_pairs_gen"] == block["num_gen"] // 2, part  # 32 generated: 16 pairs; 64 held-out: 32


@pytest.mark.slow
def test_old_run_generates_the_same_images(old_run, tmp_path):
    out = tmp_path / "generate"
    proc = run_tool(
        "generate", [f"ckpt={old_run / 'checkpoints' / 'last.ckpt'}", f"out={out}", *EXPECTED["generate"]], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "images").glob("*.png"))}
    found["grid.png"] = hashlib.sha256((out / "grid.png").read_bytes()).hexdigest()
    assert found == EXPECTED["images"]


@pytest.mark.slow
def test_the_same_command_trains_the_same_weights(tmp_path, demo_root):
    run = tmp_path / "run"
    proc = run_tool(
        "train",
        EXPECTED["train"]
        + [f"dataset.root={demo_root}", f"dataset.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    new, old = _weights(run / "checkpoints" / "last.ckpt"), _weights(FIXTURE / "checkpoints" / "last.ckpt")
    assert sorted(new) == sorted(old) == sorted(EXPECTED["train_weights"])  # the same tensors as the old run
    differ = [k for k, digest in EXPECTED["train_weights"].items() if tensor_digest(new[k]) != digest]
    assert not differ, f"{len(differ)} of {len(new)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.slow
def test_make_resume_continues_the_old_run(old_run, tmp_path, demo_root):
    # make resume = braingan.train resume=last: the newest last.ckpt under ./outputs.
    (tmp_path / "outputs").mkdir()
    shutil.move(old_run, tmp_path / "outputs" / "old_run")
    run = tmp_path / "outputs" / "old_run"
    before = (run / ".hydra" / "overrides.yaml").read_text()
    proc = run_tool(
        "train",
        ["resume=last", "kimg=0.024", f"dataset.root={demo_root}", f"dataset.cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from braingan.checkpoint import read_checkpoint

    state = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert state["braingan"]["cur_nimg"] == 24
    assert state["hyper_parameters"]["net"]["z_dim"] == 8  # the run's own micro model, replayed from its overrides
    # The resume rewrote the run's overrides in today's terms: resolution is a plain number, and the
    # CPU preset that trainer=cpu chose then is experiment=cpu now.
    assert "- trainer=cpu" in before and "- resolution='32'" in before
    after = (run / ".hydra" / "overrides.yaml").read_text().splitlines()
    assert after[:4] == ["- dataset=demo", "- experiment=cpu", "- model=tiny", "- resolution=32"]
    assert state["braingan"]["format_version"] == 2
