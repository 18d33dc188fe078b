"""The embedded MNI152 demo set: OASIS naming, subject splits, real brains, caching, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braingan.data.demo import (
    BUILDER_VERSION,
    SPEC_FILE,
    axial_template,
    build_demo_dataset,
    demo_subject_splits,
    slice_positions,
)
from braingan.data.layouts import DatasetError, discover

NAME = re.compile(r"^case_(\d{3})_slice_(0|[1-9]\d*)\.nii\.png$")  # slice number not padded
SMALL = dict(num_subjects=5, slices_per_subject=4, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "cache", seed=0, **SMALL)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_names_counts_and_subject_split(small: Path) -> None:
    folders = sorted(p.name for p in small.iterdir())
    assert folders == [SPEC_FILE, "keras_png_slices_test", "keras_png_slices_train", "keras_png_slices_validate"]
    subjects_by_split: dict[str, set[str]] = {}
    for split in ("train", "validate", "test"):
        names = sorted(p.name for p in (small / f"keras_png_slices_{split}").iterdir())
        matches = [NAME.match(n) for n in names]
        assert all(matches), names
        subjects = {m[1] for m in matches}
        subjects_by_split[split] = subjects
        for subject in subjects:  # every subject has all of its slices in one split
            assert {int(m[2]) for m in matches if m[1] == subject} == {0, 1, 2, 3}
    assert [len(subjects_by_split[s]) for s in ("train", "validate", "test")] == [3, 1, 1]
    all_subjects = set().union(*subjects_by_split.values())
    assert all_subjects == {"001", "002", "003", "004", "005"}
    assert sum(len(s) for s in subjects_by_split.values()) == 5  # disjoint
    assert len(discover(small, "oasis", ["train", "validate", "test"])) == 20


def test_images_are_upright_brains_in_256_gray(small: Path) -> None:
    for path in sorted(small.rglob("*.png")):
        image = Image.open(path)
        assert image.mode == "L" and image.size == (256, 256)
        pixels = np.asarray(image)
        assert pixels[:16, :16].max() == 0 and pixels[-16:, -16:].max() == 0  # dark corners
        rows, cols = np.nonzero(pixels)
        assert abs(rows.mean() - 127.5) < 40 and abs(cols.mean() - 127.5) < 40  # centred
    middle = np.asarray(Image.open(small / "keras_png_slices_train" / "case_001_slice_2.nii.png"))
    assert middle[118:138, 118:138].mean() > 60  # brain tissue in the centre
    assert middle.max() > 200
    rows, cols = np.nonzero(middle)
    assert np.ptp(rows) > 1.1 * np.ptp(cols)  # axial brains are longer front-to-back


def test_template_orientation_is_radiological() -> None:
    from nibabel import aff2axcodes
    from nilearn.datasets import load_mni152_template

    # axial_template flips x and y assuming RAS+ voxels: row 0 anterior, column 0 patient right
    assert aff2axcodes(load_mni152_template(resolution=1).affine) == ("R", "A", "S")
    template = axial_template()
    assert template.shape == (189, 256, 256) and template.dtype == np.float32
    lowest = template[slice_positions(template, 32)[0]]
    rows = np.nonzero(lowest.max(axis=1) > 0)[0]
    middle = (rows[0] + rows[-1]) // 2
    # the lowest slice cuts the cerebellum (posterior, big) and temporal poles (anterior, small):
    # posterior must be at the bottom for an upright view
    assert lowest[middle:].sum() > 2 * lowest[:middle].sum()


def test_deterministic_across_builds(small: Path, tmp_path: Path) -> None:
    again = build_demo_dataset(tmp_path / "again", seed=0, **SMALL | {"progress": True})
    assert files_of(again) == files_of(small)
    other = build_demo_dataset(tmp_path / "other", seed=1, **SMALL)
    assert files_of(other) != files_of(small)


def test_reused_when_spec_unchanged_rebuilt_when_changed(tmp_path: Path) -> None:
    root = build_demo_dataset(tmp_path / "cache", seed=0, **SMALL)
    spec = json.loads((root / SPEC_FILE).read_text())
    assert spec == {"builder_version": BUILDER_VERSION, "num_subjects": 5, "slices_per_subject": 4, "seed": 0}
    probe = root / "keras_png_slices_train" / sorted(p.name for p in (root / "keras_png_slices_train").iterdir())[0]
    mtime = probe.stat().st_mtime_ns
    before = files_of(root)
    assert build_demo_dataset(tmp_path / "cache", seed=0, **SMALL) == root
    assert probe.stat().st_mtime_ns == mtime

    build_demo_dataset(tmp_path / "cache", seed=1, **SMALL)
    assert json.loads((root / SPEC_FILE).read_text())["seed"] == 1
    assert files_of(root) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no staging left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(DatasetError, match="not a demo dataset folder"):
        build_demo_dataset(precious, **SMALL)
    assert (precious / "thesis.txt").read_text() == "do not delete"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(files_of(build_demo_dataset(empty, **SMALL))) == 20  # an empty folder is fine


def test_default_spec_gives_oasis_sized_splits() -> None:
    # The default build (80 x 32) takes ~20 s, too slow for the unit suite; check its arithmetic.
    splits = demo_subject_splits(80, seed=0)
    counts = {s: splits.count(s) for s in ("train", "validate", "test")}
    assert counts == {"train": 64, "validate": 8, "test": 8}
    assert counts["train"] * 32 == 2048 and 80 * 32 >= 2000
    positions = slice_positions(axial_template(), 32)
    assert len(set(positions.tolist())) == 32 and np.all(np.diff(positions) > 0)
    assert demo_subject_splits(80, seed=0) == splits and demo_subject_splits(80, seed=1) != splits


def test_default_root_matches_the_demo_config(monkeypatch, tmp_path) -> None:
    from omegaconf import OmegaConf

    from braingan.confdir import CONF_DIR
    from braingan.data.demo import default_demo_root

    monkeypatch.setenv("BRAINGAN_CACHE", str(tmp_path))
    cfg = OmegaConf.merge(
        OmegaConf.load(CONF_DIR / "paths.yaml"), {"dataset": OmegaConf.load(CONF_DIR / "dataset" / "demo.yaml")}
    )
    assert default_demo_root() == tmp_path / "demo" == Path(cfg.dataset.root)
