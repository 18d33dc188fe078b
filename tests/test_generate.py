"""`make generate` (python -m braingan.generate): tiny checkpoints trained here (conditional ADNI
AD/NC, unconditional demo) rendered by the real entry point; assertions on the files it writes."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braingan import generate as generate_module
from braingan.checkpoint import load_generator
from braingan.utils.animation import interpolation_path, lerp, slerp
from braingan.utils.errors import UsageError
from helpers.runs import one_line_exit

W, H = 256, 240  # ADNI's native size (the fixture writes 256 x 240 JPEGs); the model is 32 x 32


@pytest.fixture(scope="module")
def adni_ckpt(tiny_adni_run: Path) -> Path:
    return tiny_adni_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def demo_ckpt(tiny_demo_run: Path) -> Path:
    return tiny_demo_run / "checkpoints" / "last.ckpt"


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Hydra entry point, in this process, as `python -m braingan.generate` runs it."""
    monkeypatch.setattr(sys, "argv", ["braingan.generate", "progress=false", *args])
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        generate_module.main()
    finally:  # Hydra points the root logger at this test's captured stdout: undo that
        logging.root.handlers[:], logging.root.level = handlers, level


def main_error(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    return one_line_exit(lambda: run_main(args, monkeypatch), "generate")


def pixels(path: Path, frame: int = 0) -> np.ndarray:
    image = Image.open(path)
    image.seek(frame)
    assert image.mode == "L"  # grayscale
    return np.asarray(image).astype(np.int16)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Same image up to float noise between batch compositions (one grey level at a few pixels)."""
    return a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01


@pytest.mark.slow
def test_images_native_size_deterministic_and_per_class(adni_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "a"
    run_main([f"ckpt={adni_ckpt}", f"out={out}", "what=[images]", "seeds=0-2", "class_name=AD"], monkeypatch)
    files = sorted((out / "images" / "AD").iterdir())
    assert [f.name for f in files] == ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert all(Image.open(f).size == (W, H) and Image.open(f).mode == "L" for f in files)
    assert not np.array_equal(pixels(files[0]), pixels(files[1]))

    again = tmp_path / "b"  # the same command again: the same bytes
    run_main([f"ckpt={adni_ckpt}", f"out={again}", "what=[images]", "seeds=0-2", "class_name=AD"], monkeypatch)
    assert all(f.read_bytes() == (again / "images" / "AD" / f.name).read_bytes() for f in files)

    single = tmp_path / "c"  # seed 2 alone, by class index, in a batch of its own
    run_main([f"ckpt={adni_ckpt}", f"out={single}", "what=[images]", "seeds=[2]", "class_index=0"], monkeypatch)
    assert close(pixels(single / "images" / "AD" / "seed0002.png"), pixels(files[2]))

    both = tmp_path / "d"  # no class given: every class of the conditional model
    run_main([f"ckpt={adni_ckpt}", f"out={both}", "what=[images]", "seeds=[2]"], monkeypatch)
    assert sorted(p.name for p in (both / "images").iterdir()) == ["AD", "NC"]
    ad, nc = pixels(both / "images" / "AD" / "seed0002.png"), pixels(both / "images" / "NC" / "seed0002.png")
    assert close(ad, pixels(files[2]))
    assert np.abs(ad - nc).mean() > 1  # the class changes the image


@pytest.mark.slow
def test_unknown_class_and_bad_values_are_one_line_errors(
    adni_ckpt: Path, demo_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    base = [f"ckpt={adni_ckpt}", f"out={tmp_path / 'x'}", "what=[images]", "seeds=[0]"]
    assert main_error([*base, "class_name=MCI"], monkeypatch) == (
        "generate: class_name=MCI is not a class of this model; its classes are 0=AD, 1=NC"
    )
    assert "classes: 0=AD, 1=NC" in main_error([*base, "class_index=2"], monkeypatch)
    assert "classes: 0=AD, 1=NC" in main_error([*base, "class_name=AD", "class_index=1"], monkeypatch)
    assert "'7-3' is not a seed" in main_error([*base, "seeds=7-3"], monkeypatch)
    assert "choose from images, grid" in main_error([*base, "what=[video]"], monkeypatch)
    assert "no such checkpoint file" in main_error([f"ckpt={tmp_path / 'none.ckpt'}"], monkeypatch)
    message = main_error([f"ckpt={demo_ckpt}", "class_name=AD"], monkeypatch)
    assert message == "generate: this model is unconditional; leave class_name and class_index unset"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_grid_interpolation_and_style_mixing(adni_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "gen"
    mp4 = generate_module.mp4_writer_available()
    run_main(
        [
            f"ckpt={adni_ckpt}",
            f"out={out}",
            "what=[images,grid,interp,mixing]",
            "class_name=NC",
            "seeds=0-9",
            "grid.size=3",
            "interp.seeds=[0,1,2]",
            "interp.steps=4",
            f"interp.mp4={str(mp4).lower()}",
            "mixing.sources=[5,6]",
            "mixing.destinations=[7,8,9]",
            "mixing.ranges.middle=[16,16]",
            "mixing.ranges.fine=[32,32]",  # a 32 px model: three non-empty ranges
        ],
        monkeypatch,
    )
    seed = {k: pixels(out / "images" / "NC" / f"seed{k:04d}.png") for k in range(10)}

    grid = pixels(out / "grid_NC.png")  # 3 x 3 of seeds 0..8, row-major
    assert grid.shape == (3 * H, 3 * W)
    assert close(grid[:H, :W], seed[0]) and close(grid[2 * H :, 2 * W :], seed[8])

    walk = pixels(out / "interp_NC.png")  # one row per segment (3, looping), steps + 1 = 5 columns
    assert walk.shape == (3 * H, 5 * W)
    assert close(walk[:H, :W], seed[0]) and close(walk[:H, 4 * W :], seed[1]) and close(walk[2 * H :, 4 * W :], seed[0])
    gif = Image.open(out / "interp_NC.gif")
    assert gif.n_frames == 3 * 4 and gif.size == (W, H)
    assert close(pixels(out / "interp_NC.gif", 0), seed[0]) and close(pixels(out / "interp_NC.gif", 4), seed[1])
    if mp4:
        import cv2

        video = cv2.VideoCapture(str(out / "interp_NC.mp4"))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == W

    mix = pixels(out / "mixing_NC.png")  # header row + 3 ranges x 2 sources; source column + 3 destinations
    assert mix.shape == ((1 + 3 * 2) * H, (1 + 3) * W)

    def tile(r, c):
        return mix[r * H : (r + 1) * H, c * W : (c + 1) * W]

    assert tile(0, 0).max() == 0  # the empty corner
    assert all(close(tile(0, 1 + d), seed[7 + d]) for d in range(3))  # destinations on top
    for block in range(3):
        assert close(tile(1 + 2 * block, 0), seed[5]) and close(tile(2 + 2 * block, 0), seed[6])  # sources on the left
    coarse = tile(1, 1)  # destination 7 with the coarse styles of source 5: neither of the two
    assert np.abs(coarse - seed[7]).mean() > 1 and np.abs(coarse - seed[5]).mean() > 1


@pytest.mark.slow
def test_embedding_pca_and_projector(adni_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "emb"
    run_main(
        [f"ckpt={adni_ckpt}", f"out={out}", "what=[embedding]", "embedding.samples=40", "embedding.seed=3"], monkeypatch
    )
    assert Image.open(out / "embedding_pca.png").size[0] > 300
    assert (out / "embedding_umap.png").exists() == generate_module.umap_available()
    arrays = np.load(out / "embedding.npz")
    assert list(arrays["class_names"]) == ["AD", "NC"] and arrays["labels"].tolist() == [0] * 40 + [1] * 40
    # w recomputed here from the documented seeding: 40 z of class AD, then 40 of class NC.
    G = load_generator(adni_ckpt)
    z = torch.from_numpy(np.random.RandomState(3).randn(80, G.z_dim)).float()
    c = torch.eye(2)[torch.tensor([0] * 40 + [1] * 40)]
    w = G.mapping(z, c)[:, 0].numpy()
    np.testing.assert_allclose(arrays["w"], w, rtol=1e-5, atol=1e-5)
    centered = w - w.mean(axis=0)
    _, _, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(np.abs(arrays["pca"]), np.abs(centered @ vt[:2].T), rtol=1e-4, atol=1e-4)
    projector = out / "projector"
    assert "tensor_path" in (projector / "projector_config.pbtxt").read_text()
    assert len((projector / "00000" / "w" / "tensors.tsv").read_text().splitlines()) == 80
    assert (projector / "00000" / "w" / "metadata.tsv").read_text().split() == ["AD"] * 40 + ["NC"] * 40


@pytest.mark.slow
def test_unconditional_demo_with_defaults_writes_no_run_folder(demo_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    """ckpt=last and out=<run>/generate by default; the tool leaves no Hydra folder or log behind."""
    monkeypatch.chdir(tmp_path)
    assert main_error(["what=[images]"], monkeypatch) == (  # no run yet
        f"generate: ckpt=last: no outputs/**/checkpoints/last.ckpt under {tmp_path}; pass ckpt=<file>"
    )
    run = tmp_path / "outputs" / "2026-01-01" / "12-00-00"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(demo_ckpt, run / "checkpoints" / "last.ckpt")
    run_main(["what=[images,grid]", "seeds=0-3", "grid.size=2"], monkeypatch)
    out = run / "generate"
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"seed{s:04d}.png" for s in range(4)]
    assert Image.open(out / "images" / "seed0000.png").size == (256, 256)  # the demo slices are 256 x 256
    assert pixels(out / "grid.png").shape == (2 * 256, 2 * 256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # no .hydra/, no generate.log
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "generate"]


def test_seed_syntax() -> None:
    parse = generate_module.parse_seeds
    assert parse("0-3") == [0, 1, 2, 3] and parse(5) == [5] and parse(["0-2", 7, "1"]) == [0, 1, 2, 7]
    assert parse("3,1-2") == [3, 1, 2]
    with pytest.raises(UsageError, match="'x' is not a seed"):
        parse("x")


def test_latent_paths() -> None:
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])  # orthogonal, norms 2 and 4
    mid = slerp(a, b, torch.tensor([0.5]))[0]
    np.testing.assert_allclose(mid.numpy(), 3 * np.array([0.5**0.5, 0.5**0.5]), atol=1e-6)  # 45 degrees, norm 3
    np.testing.assert_allclose(lerp(a, b, torch.tensor([0.25]))[0].numpy(), [1.5, 1.0])
    keys = torch.randn(3, 4, 5)  # [K, num_ws, w_dim]
    path = interpolation_path(keys, steps=4, method="slerp", loop=True)
    assert path.shape == (3, 5, 4, 5)
    torch.testing.assert_close(path[2, -1], keys[0])  # the loop closes
    torch.testing.assert_close(path[1, 0], keys[1])
    assert interpolation_path(keys, steps=2, loop=False).shape == (2, 3, 4, 5)
