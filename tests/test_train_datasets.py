"""One training step of the real entry point on each dataset layout, from fixture trees with the
real naming schemes (OASIS, ADNI AD/NC, an AKOA-like non-square folder)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braingan.checkpoint import load_checkpoint
from braingan.experiment.run import train
from helpers.mri import write_adni, write_knee_folder, write_oasis
from helpers.runs import compose, tiny_overrides

ONE_STEP = 0.008  # kimg: one batch of 8


def run_one_step(tmp_path: Path, dataset: str, root: Path, **extra) -> Path:
    cfg = compose(tiny_overrides(tmp_path, root, ONE_STEP, dataset=dataset, **extra))
    return train(cfg)


def manifest_rows(run: Path) -> list[dict]:
    with open(run / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def grid_of(run: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(run / "samples" / name))


@pytest.mark.slow
def test_oasis_trains_and_skips_a_corrupt_slice(tmp_path):
    root = write_oasis(tmp_path / "OASIS", corrupt=True)
    with pytest.warns(UserWarning, match="case_099_slice_0.nii.png"):
        run = run_one_step(tmp_path, "oasis", root, **{"dataset.skip_bad": True})
    rows = manifest_rows(run)
    assert len(rows) == 5 * 11  # 3 train + 1 validate + 1 test subject, 11 slices; corrupt one left out
    assert {r["split"] for r in rows if r["subject"] == "004"} == {"validate"}
    assert [r["slice"] for r in rows if r["subject"] == "001"][9:] == ["9", "10"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["braingan"]["cur_nimg"] == 8
    assert ckpt["hyper_parameters"]["net"]["c_dim"] == 0
    assert grid_of(run, "fakes_000000.000.png").shape == (4 * 32, 4 * 32)  # square data: whole tiles


@pytest.mark.slow
def test_adni_conditional_rows_per_class_and_native_size(tmp_path):
    root = write_adni(tmp_path / "ADNI")
    run = run_one_step(tmp_path, "adni", root / "AD_NC", resolution="256")
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["net"]["c_dim"] == 2  # model.conditional=auto: two classes
    data = ckpt["hyper_parameters"]["data"]
    assert data["class_names"] == ["AD", "NC"]
    assert (data["geometry"]["width"], data["geometry"]["height"], data["geometry"]["fit"]) == (256, 240, "pad")
    assert "G_ema.mapping.w_avg_class" in ckpt["state_dict"]
    # 16 samples, one row per class: 2 rows of 8 tiles, each saved back at 256 x 240 (padding cut off).
    fakes, reals = grid_of(run, "fakes_000000.000.png"), grid_of(run, "reals.png")
    assert fakes.shape == (2 * 240, 8 * 256) and reals.shape == fakes.shape
    assert reals[:240].mean() < reals[240:].mean()  # row 0 = AD (the darker fixture class)
    rows = manifest_rows(run)
    assert {(r["split"], r["class"]) for r in rows} == {
        ("train", "AD"),
        ("train", "NC"),
        ("test", "AD"),
        ("test", "NC"),
    }


@pytest.mark.slow
def test_adni_one_class_is_unconditional(tmp_path):
    root = write_adni(tmp_path / "ADNI")
    run = run_one_step(tmp_path, "adni", root, **{"dataset.classes": "[AD]"})
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["net"]["c_dim"] == 0
    assert ckpt["hyper_parameters"]["data"]["class_names"] == ["AD"]
    assert {r["class"] for r in manifest_rows(run)} == {"AD"}
    with pytest.raises(ValueError, match="model.conditional=true but the training data has 1 class"):
        run_one_step(tmp_path / "forced", "adni", root, **{"dataset.classes": "[AD]", "model.conditional": True})


@pytest.mark.slow
def test_folder_non_square_with_subject_holdout(tmp_path):
    root = write_knee_folder(tmp_path / "knee", patients=5, slices=4)
    run = run_one_step(tmp_path, "folder", root, **{"dataset.holdout": 0.2})
    rows = manifest_rows(run)
    held = {r["subject"] for r in rows if r["split"] == "validate"}
    assert len(held) == 1  # one of five patients, with all four of its slices
    assert sum(r["split"] == "validate" for r in rows) == 4
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    geometry = ckpt["hyper_parameters"]["data"]["geometry"]
    assert (geometry["width"], geometry["height"]) == (260, 228)
    assert grid_of(run, "fakes_000000.000.png").shape == (4 * 28, 4 * 32)  # 260x228 aspect at 32 px
    # The split is seeded: a second run makes the same one.
    again = run_one_step(tmp_path / "again", "folder", root, **{"dataset.holdout": 0.2})
    assert manifest_rows(again) == rows


@pytest.mark.slow
def test_resume_refuses_other_classes_or_an_unconditional_model(tmp_path):
    root = write_adni(tmp_path / "ADNI")
    run = run_one_step(tmp_path, "adni", root)
    last = str(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match=r"classes \['AD', 'NC'\] -> \['NC', 'AD'\]"):
        run_one_step(tmp_path, "adni", root, resume=last, **{"dataset.classes": "[NC,AD]"})
    with pytest.raises(ValueError, match="c_dim 2 -> 0"):
        run_one_step(tmp_path, "adni", root, resume=last, **{"model.conditional": False})
