"""`make prepare` (python -m braingan.prepare): synthetic NIfTI/Analyze volumes written with
nibabel become the expected OASIS-layout PNG slices, split by subject."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from braingan import prepare as prepare_module
from braingan.data.layouts import OASIS_NAME, DatasetError, discover
from braingan.data.splits import check_no_leak
from braingan.prepare import prepare
from helpers.runs import REPO, one_line_exit

SHAPE = (40, 48, 36)  # [X, Y, Z] voxels of the phantom in RAS+: x -> right, y -> anterior, z -> up
SPLITS = ("train", "validate", "test")
# Eight subjects (one with two sessions), OASIS-1 Analyze pairs and ADNI NIfTI files.
OASIS = ["OAS1_0001_MR1", "OAS1_0002_MR1", "OAS1_0002_MR2", "OAS1_0003_MR1", "OAS1_0004_MR1"]
ADNI = ["002_S_0295", "002_S_0413", "011_S_0002", "023_S_0031"]


def phantom(scale: float = 1.0) -> np.ndarray:
    """Ellipsoid 'brain' [X, Y, Z] brightening upward in a zero background, with a bright
    marker (16 voxels, clipped by the 99.5% window) in its right-anterior part."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    inside = ((x - 19.5) / 16) ** 2 + ((y - 23.5) / 20) ** 2 + ((z - 17.5) / 14) ** 2 <= 1
    volume = np.where(inside, 100 + 2 * z, 0).astype(np.float32)
    volume[28:30, 38:40, 16:20] = 1000
    return scale * volume


def brain_slices(min_fraction: float) -> list[int]:
    """Axial indices whose share of nonzero pixels is >= min_fraction, counted here directly."""
    mask = phantom() != 0
    return [z for z in range(SHAPE[2]) if mask[:, :, z].sum() / (SHAPE[0] * SHAPE[1]) >= min_fraction]


def write_volumes(root: Path) -> Path:
    """The raw data tree: OASIS-1 Analyze pairs stored radiologically (LAS, x flipped, with the
    singleton 4th axis of OASIS-1), ADNI .nii stored LPS and .nii.gz stored RAS, each with its
    own intensity scale."""
    for i, session in enumerate(OASIS):
        stored = phantom(1 + i)[::-1, :, :, None].copy()  # [X, Y, Z, 1], x runs right -> left
        path = root / session / "PROCESSED" / "MPRAGE" / "T88_111"
        path.mkdir(parents=True)
        image = nib.AnalyzeImage(stored, np.diag([-1.0, 1.0, 1.0, 1.0]))
        nib.save(image, path / f"{session}_mpr_n4_anon_111_t88_gfc.img")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0]
    for i, subject in enumerate(ADNI):
        path = root / "ADNI" / subject / "MPRAGE" / "2006-04-18_08_20_30.0" / f"S{1000 + i}"
        path.mkdir(parents=True)
        name = f"ADNI_{subject}_MR_MPRAGE_br_raw_20060418_1_S{1000 + i}_I{2000 + i}"
        if i % 2 == 0:
            image = nib.Nifti1Image(phantom(0.5 + i)[::-1, ::-1].copy(), lps)
            nib.save(image, path / f"{name}.nii")
        else:
            nib.save(nib.Nifti1Image(phantom(0.5 + i), np.eye(4)), path / f"{name}.nii.gz")
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_volumes(tmp_path_factory.mktemp("raw") / "volumes")


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Hydra entry point, in this process, as `python -m braingan.prepare` runs it."""
    monkeypatch.setattr(sys, "argv", ["braingan.prepare", "progress=false", *args])
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        prepare_module.main()
    finally:  # Hydra points the root logger at this test's captured stdout: undo that
        logging.root.handlers[:], logging.root.level = handlers, level


def main_error(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The one-line message the entry point exits with."""
    return one_line_exit(lambda: run_main(args, monkeypatch), "prepare")


def read_csv(output: Path) -> list[dict]:
    with open(output / "subjects.csv", newline="") as f:
        return list(csv.DictReader(f))


def slices_by_case(output: Path) -> dict[tuple[str, str], list[int]]:
    """(split, case) -> sorted slice indices found in the PNG file names."""
    found: dict[tuple[str, str], list[int]] = {}
    for split in SPLITS:
        for path in (output / f"keras_png_slices_{split}").iterdir():
            match = OASIS_NAME.match(path.name)
            assert match, path.name
            found.setdefault((split, match["subject"]), []).append(int(match["slice"]))
    return {key: sorted(value) for key, value in found.items()}


@pytest.mark.slow
def test_make_prepare_writes_the_oasis_layout(raw: Path, tmp_path: Path) -> None:
    """`make prepare ARGS=...` -> python -m braingan.prepare, with the default settings."""
    output = tmp_path / "png"
    proc = subprocess.run(
        ["make", "-s", "prepare", f"ARGS=input={raw} output={output}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "slicing volumes" in proc.stderr and "9/9" in proc.stderr  # the progress bar
    assert "wrote" in proc.stdout

    expected = brain_slices(0.1)  # the default min_brain_fraction
    assert 10 < len(expected) < SHAPE[2] - 4
    rows = read_csv(output)
    cases = {r["case"]: r for r in rows}
    assert set(cases) == {"OAS1_0001", "OAS1_0002-1", "OAS1_0002-2", "OAS1_0003", "OAS1_0004", *ADNI}
    assert cases["OAS1_0002-2"]["volume"].startswith("OAS1_0002_MR2/")
    assert all(int(r["slices"]) == len(expected) for r in rows)
    split_of = {r["subject"]: r["split"] for r in rows}
    assert len(split_of) == 8 and all(r["split"] == split_of[r["subject"]] for r in rows)
    subjects_per_split = [sum(s == split for s in split_of.values()) for split in SPLITS]
    assert subjects_per_split == [6, 1, 1]  # 80/10/10 of 8 subjects, by subject

    found = slices_by_case(output)
    assert found == {(r["split"], r["case"]): expected for r in rows}
    records = discover(output, "oasis", list(SPLITS))
    assert len(records) == 9 * len(expected)
    check_no_leak(records)

    # Every volume shows the same brain whatever its storage order and intensity scale.
    reference = None
    for r in rows:
        path = output / f"keras_png_slices_{r['split']}" / f"case_{r['case']}_slice_17.nii.png"
        image = Image.open(path)
        assert image.mode == "L" and image.size == (SHAPE[0], SHAPE[1])  # native [W, H]
        pixels = np.asarray(image)
        if reference is None:
            reference = pixels
        np.testing.assert_array_equal(pixels, reference, err_msg=r["volume"])
    rows_, cols_ = np.nonzero(reference == 255)
    assert len(rows_) == 4  # only the clipped marker reaches 255 in this slice
    assert rows_.max() < SHAPE[1] // 4 and cols_.max() < SHAPE[0] // 2  # anterior up, right left
    assert reference[0].max() == 0 and reference[:, 0].max() == 0  # background stays 0
    # The tissue value follows the 0.5-99.5% window of the foreground, computed here directly.
    brain = phantom()[phantom() != 0]
    lo, hi = np.percentile(brain, [0.5, 99.5])
    assert int(reference[SHAPE[1] // 2, SHAPE[0] // 2]) == pytest.approx(
        np.clip((100 + 2 * 17 - lo) / (hi - lo), 0, 1) * 255, abs=1
    )


def test_slice_range_canvas_and_sessions(raw: Path, tmp_path: Path, monkeypatch) -> None:
    output = tmp_path / "png"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_main(
        [
            f"input={raw}",
            f"output={output}",
            "slice_range=[12,20]",
            "min_brain_fraction=null",
            "slice_step=3",
            "canvas=[64,32]",
        ],
        monkeypatch,
    )
    assert list(cwd.iterdir()) == []  # Hydra wrote no outputs/, .hydra/ or prepare.log here
    found = slices_by_case(output)
    assert len(found) == 9 and all(v == [12, 15, 18] for v in found.values())
    split_of_case = {case: split for split, case in found}
    assert split_of_case["OAS1_0002-1"] == split_of_case["OAS1_0002-2"]
    image = Image.open(next((output / "keras_png_slices_train").iterdir()))
    assert image.size == (64, 32)  # [width, height]
    pixels = np.asarray(image)
    assert pixels[:, :12].max() == 0 and pixels[:, -12:].max() == 0  # padded left and right
    assert pixels[0].max() > 0 and pixels[-1].max() > 0  # cropped at top and bottom

    fractions = tmp_path / "fractions"
    run_main([f"input={raw}", f"output={fractions}", "slice_range=[0.5,1.0]", "min_brain_fraction=0.3"], monkeypatch)
    expected = [z for z in brain_slices(0.3) if z >= 18]
    assert set(map(tuple, slices_by_case(fractions).values())) == {tuple(expected)}


def test_split_is_seeded_by_subject(raw: Path, tmp_path: Path) -> None:
    kwargs = dict(slice_range=[17, 18], min_brain_fraction=None, progress=False)
    first = read_csv(prepare(raw, tmp_path / "a", seed=3, **kwargs))
    again = read_csv(prepare(raw, tmp_path / "b", seed=3, **kwargs))
    other = [read_csv(prepare(raw, tmp_path / f"s{s}", seed=s, **kwargs)) for s in (4, 5)]
    assert first == again
    assert any(o != first for o in other)
    halves = read_csv(prepare(raw, tmp_path / "h", splits={"train": 0.5, "test": 0.5}, **kwargs))
    assert sorted(r["split"] for r in halves if r["case"] != "OAS1_0002-2") == ["test"] * 4 + ["train"] * 4
    assert not any((tmp_path / "h" / "keras_png_slices_validate").iterdir())


def test_subject_regex_errors_name_the_regex_and_the_paths(raw: Path, tmp_path: Path, monkeypatch) -> None:
    output = tmp_path / "png"
    none = main_error([f"input={raw}", f"output={output}", 'subject_regex="sub-\\d+"'], monkeypatch)
    assert "subject_regex='sub-\\d+' matches none of the 9 volumes" in none
    assert "(e.g. ADNI/002_S_0295/MPRAGE/2006-04-18_08_20_30.0/S1000/ADNI_002_S_0295_MR_" in none

    some = main_error([f"input={raw}", f"output={output}", 'subject_regex="OAS1_\\d{4}"'], monkeypatch)
    assert "matches 5 of the 9 volumes" in some
    assert "ADNI/002_S_0295/" in some and "ADNI/002_S_0413/" in some and "and 1 more" in some

    greedy = 'subject_regex="(?P<subject>OAS1_\\d{4}.*|\\d{3}_S_\\d{4})"'  # captures folders too
    named = main_error([f"input={raw}", f"output={output}", greedy], monkeypatch)
    assert "unusable in file names" in named
    assert not output.exists()  # nothing was written

    # A regex with a plain group 1 works too: ADNI site only, so subjects merge by site.
    run_main(
        [f"input={raw}/ADNI", f"output={output}", 'subject_regex="^(\\d{3})_S_"', "slice_range=[17,18]"], monkeypatch
    )
    assert sorted({r["subject"] for r in read_csv(output)}) == ["002", "011", "023"]


def test_existing_output_needs_overwrite(raw: Path, tmp_path: Path, monkeypatch) -> None:
    output = tmp_path / "png"
    (output / "keras_png_slices_train").mkdir(parents=True)
    stale = output / "keras_png_slices_train" / "case_OLD_slice_0.nii.png"
    stale.write_bytes(b"old")
    (output / "notes.txt").write_text("mine")
    args = [f"input={raw}", f"output={output}", "slice_range=[17,18]"]
    message = main_error(args, monkeypatch)
    assert f"output={output} is not empty; pass overwrite=true" in message
    assert stale.read_bytes() == b"old"

    run_main([*args, "overwrite=true"], monkeypatch)
    assert not stale.exists()  # old split folders are replaced
    assert (output / "notes.txt").read_text() == "mine"  # other files are kept
    assert sorted(p.name for p in output.iterdir()) == [
        "keras_png_slices_test",
        "keras_png_slices_train",
        "keras_png_slices_validate",
        "notes.txt",
        "subjects.csv",
    ]
    assert len(discover(output, "oasis", list(SPLITS))) == 9


def test_a_failing_volume_leaves_no_partial_output(raw: Path, tmp_path: Path) -> None:
    broken = tmp_path / "volumes"
    write_volumes(broken)
    victim = next(broken.rglob("ADNI_023_S_0031*.nii.gz"))
    victim.write_bytes(victim.read_bytes()[:200])  # truncated download
    output = tmp_path / "png"
    with pytest.raises(DatasetError, match="could not read volume .*ADNI_023_S_0031"):
        prepare(broken, output, progress=False)
    assert not output.exists()  # no split folders, no staging folder, no csv
    output.mkdir()
    with pytest.raises(DatasetError, match="could not read volume"):
        prepare(broken, output, progress=False)
    assert list(output.iterdir()) == []  # a folder that was there stays, empty


def test_input_errors(tmp_path: Path, monkeypatch) -> None:
    assert "input is not set" in main_error([f"output={tmp_path / 'o'}"], monkeypatch)
    (tmp_path / "empty").mkdir()
    message = main_error([f"input={tmp_path / 'empty'}", f"output={tmp_path / 'o'}"], monkeypatch)
    assert "holds no files matching patterns=['*.nii', '*.nii.gz', '*.img']" in message
    with pytest.raises(DatasetError, match="OASIS layout has splits"):
        prepare(tmp_path / "empty", tmp_path / "o", splits={"train": 0.9, "val": 0.1})


def test_a_threshold_that_keeps_nothing_is_an_error(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no slices selected in any of the 9 volumes"):
        prepare(raw, tmp_path / "o", min_brain_fraction=0.99, progress=False)
    assert not (tmp_path / "o").exists()
