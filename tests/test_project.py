"""make project end to end: the real entry point's work function on the shared tiny runs."""

from __future__ import annotations

import csv
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from braingan.experiment.projection import project_images
from braingan.utils.errors import UsageError
from helpers.runs import one_line_exit

pytestmark = pytest.mark.slow
FAST = {"steps": 3, "w_avg_samples": 16, "progress": False}  # file layout and bookkeeping, not quality


def ckpt_of(run):
    return run / "checkpoints" / "last.ckpt"


def demo_images(demo_root, tmp_path, n=3):
    folder = tmp_path / "slices"
    folder.mkdir()
    for path in sorted(p for p in demo_root.rglob("*.png"))[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def test_outputs_summary_and_resume(tiny_demo_run, demo_root, tmp_path):
    folder, out = demo_images(demo_root, tmp_path), tmp_path / "out"
    result = project_images(ckpt_of(tiny_demo_run), images=str(folder), out=out, batch=2, **FAST)
    stems = sorted(p.stem for p in folder.iterdir())
    assert result["done"] == 3 and result["skipped"] == 0
    for sub, suffix in (("latents", "npz"), ("recon", "png"), ("residual", "png"), ("overlay", "png")):
        assert sorted(p.stem for p in (out / sub).glob(f"*.{suffix}")) == stems, sub
    with np.load(out / "latents" / f"{stems[0]}.npz") as data:
        assert data["ws"].shape == (8, 32) and data["ws"].dtype == np.float32  # num_ws, w_dim of the tiny model
        assert str(data["mode"]) == "w+" and int(data["steps"]) == 3 and data["history"].shape == (3,)
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(r["image"] for r in rows) == [str(folder / f"{s}.png") for s in stems]
    assert all(float(r["psnr"]) > 0 and 0 < float(r["ssim"]) <= 1 for r in rows)
    assert (out / "summary_subjects.csv").is_file() and (out / "summary_classes.csv").is_file()
    with Image.open(out / "recon" / f"{stems[0]}.png") as recon, Image.open(folder / f"{stems[0]}.png") as real:
        assert recon.size == real.size  # native size

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    shutil.copy(sorted(demo_root.rglob("*.png"))[3], folder)
    again = project_images(ckpt_of(tiny_demo_run), images=str(folder), out=out, batch=2, **FAST)
    assert again["done"] == 1 and again["skipped"] == 3  # only the new image is optimized
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(list(csv.DictReader(open(out / "summary.csv")))) == 4  # the skipped images' rows are kept
    # Other settings into the same folder would mix old and new results: refused, nothing written.
    with pytest.raises(UsageError, match=r"holds projections made with other settings \(projector.steps: 3 -> 4\)"):
        project_images(ckpt_of(tiny_demo_run), images=str(folder), out=out, batch=2, **{**FAST, "steps": 4})
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_adni_slices_come_back_at_256x240_with_their_class(tiny_adni_run, tmp_path):
    from helpers.mri import write_adni

    root = write_adni(tmp_path / "ADNI", per_class=1, slices=1) / "AD_NC" / "test"
    result = project_images(ckpt_of(tiny_adni_run), images=str(root), mode="w", **FAST)
    out = result["out"]
    assert out == tiny_adni_run / "project" / "test-w"  # <run>/project/<images>-<mode>
    assert sorted(r["class"] for r in result["rows"]) == ["AD", "NC"]
    for name in ("recon", "residual"):
        for png in (out / name).glob("*.png"):
            with Image.open(png) as image:
                assert image.size == (256, 240), png
    classes = list(csv.DictReader(open(out / "summary_classes.csv")))
    assert sorted(r["class"] for r in classes) == ["AD", "NC"] and all(r["images"] == "1" for r in classes)
    shutil.rmtree(out)  # the shared run stays as it was


def test_a_manifest_split_is_projected(tiny_demo_run, tmp_path):
    result = project_images(ckpt_of(tiny_demo_run), images="heldout", limit=2, out=tmp_path / "o", **FAST)
    assert result["done"] == 2 and all(r["subject"] for r in result["rows"])


def bad_input_cases(tiny_demo_run, tiny_adni_run, demo_root, tmp):
    empty = tmp / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    colour = tmp / "colour"
    colour.mkdir()
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(colour / "rgb_1.png")
    square = tmp / "square"
    square.mkdir()
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(square / "s_1.png")
    sized = tmp / "sized"
    sized.mkdir()
    Image.fromarray(np.zeros((240, 256), np.uint8)).save(sized / "s_1.png")  # ADNI's 256 x 240
    text = tmp / "notes.txt"
    text.write_text("not a checkpoint")
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "case_001_slice_0.nii.png").write_text("not a PNG")
    demo, adni = ckpt_of(tiny_demo_run), ckpt_of(tiny_adni_run)
    return {
        "not-a-checkpoint": (text, str(square), {}, "is not a braingan checkpoint: it is a text file"),
        "no-images": (demo, str(empty), {}, "the folder holds no images"),
        "colour-images": (demo, str(colour), {}, "are colour (e.g."),
        "other-aspect": (adni, str(square), {"class_name": "AD"}, "another aspect than the model's 256x240"),
        "unknown-class": (adni, str(sized), {"class_name": "MCI"}, "class_name=MCI is not a class of this model"),
        "class-of-unconditional": (demo, str(square), {"class_name": "AD"}, "this model is unconditional"),
        "no-such-images": (demo, str(tmp / "nowhere"), {}, "no such folder or image, and not a split"),
        "bad-mode": (demo, str(square), {"mode": "z"}, "mode=z must be w or w+"),
        "unreadable-image": (demo, str(broken), {}, "case_001_slice_0.nii.png cannot be read as an image"),
        "noise-ramp-0": (demo, str(square), {"noise_ramp": 0}, "lr_rampdown and noise_ramp in (0, 1]"),
        "steps-text": (demo, str(square), {"steps": "many"}, "steps=many must be a number"),
        "limit-0": (demo, str(square), {"limit": 0}, "limit=0 must be a whole number >= 1 or null"),
    }


CASES = (
    "not-a-checkpoint",
    "no-images",
    "colour-images",
    "other-aspect",
    "unknown-class",
    "class-of-unconditional",
    "no-such-images",
    "bad-mode",
    "unreadable-image",
    "noise-ramp-0",
    "steps-text",
    "limit-0",
)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line(case, tiny_demo_run, tiny_adni_run, demo_root, tmp_path):
    ckpt, images, extra, expected = bad_input_cases(tiny_demo_run, tiny_adni_run, demo_root, tmp_path)[case]
    with pytest.raises(UsageError) as error:
        project_images(ckpt, images=images, out=tmp_path / "out", **{**FAST, **extra})
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)
    assert not (tmp_path / "out").exists()


def test_the_entry_point_prints_the_line(tiny_demo_run, tmp_path, monkeypatch):
    from braingan import project

    monkeypatch.setattr(sys, "argv", ["project", f"ckpt={ckpt_of(tiny_demo_run)}", f"images={tmp_path}"])
    assert "the folder holds no images" in one_line_exit(project.main, "project")


def test_generate_plots_projected_latents_with_the_samples(tiny_adni_run, tiny_demo_run, tmp_path):
    from braingan.generate import generate
    from helpers.mri import write_adni

    root = write_adni(tmp_path / "ADNI", per_class=1, slices=2) / "AD_NC" / "test"
    projected = project_images(ckpt_of(tiny_adni_run), images=str(root), out=tmp_path / "proj", **FAST)
    out = generate(
        ckpt_of(tiny_adni_run),
        out=tmp_path / "gen",
        what=["embedding"],
        embedding={"samples": 20, "methods": ["pca"], "projector": False, "projected": str(projected["out"])},
        progress=False,
    )
    assert (out / "embedding_pca.png").is_file()
    with np.load(out / "embedding.npz") as data:
        assert data["projected_w"].shape == (4, 32) and data["projected_pca"].shape == (4, 2)
        assert sorted(data["projected_labels"].tolist()) == [0, 0, 1, 1]  # AD, AD, NC, NC
        latents = sorted((projected["out"] / "latents").glob("*.npz"))  # read in file-name order
        for w, npz in zip(data["projected_w"], latents):
            with np.load(npz) as z:
                np.testing.assert_allclose(w, z["ws"].mean(axis=0), rtol=1e-5)  # the mean over the layers
    # Latents of another model are in another space: refused in one line.
    with pytest.raises(UsageError, match=r"was projected with .*, not .*: project the slices with this checkpoint"):
        generate(
            ckpt_of(tiny_demo_run),
            out=tmp_path / "gen2",
            what=["embedding"],
            embedding={"samples": 20, "methods": ["pca"], "projector": False, "projected": str(projected["out"])},
            progress=False,
        )
