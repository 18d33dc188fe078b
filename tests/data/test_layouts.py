"""Discovery of slices: OASIS naming and ordering, ignored folders/files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from braingan.data.layouts import DatasetError, SliceRecord, discover, natural_key


def touch(path: Path) -> Path:
    """Discovery never opens files, so empty files stand in for images here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def oasis_root(tmp_path: Path) -> Path:
    """The real release nests the split folders in keras_png_slices_data/."""
    data = tmp_path / "OASIS" / "keras_png_slices_data"
    for n in (10, 0, 9, 2, 1):  # created out of order on purpose
        touch(data / "keras_png_slices_train" / f"case_002_slice_{n}.nii.png")
        touch(data / "keras_png_slices_train" / f"case_001_slice_{n}.nii.png")
        touch(data / "keras_png_slices_seg_train" / f"seg_001_slice_{n}.nii.png")
    touch(data / "keras_png_slices_validate" / "case_007_slice_3.nii.png")
    touch(data / "keras_png_slices_test" / "case_009_slice_0.nii.png")
    touch(data / "keras_png_slices_train" / ".case_003_slice_0.nii.png")  # hidden: ignored
    touch(data / "keras_png_slices_train" / "notes.txt")                 # not an image: ignored
    return tmp_path / "OASIS"


def error_of(*args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        discover(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "layout errors must be a single line"
    return message


def test_oasis_order_split_and_fields(oasis_root: Path) -> None:
    records = discover(oasis_root, "oasis", ["train"])
    assert [(r.subject, r.slice) for r in records] == [
        ("001", 0), ("001", 1), ("001", 2), ("001", 9), ("001", 10),
        ("002", 0), ("002", 1), ("002", 2), ("002", 9), ("002", 10),
    ]
    assert all(r.split == "train" and r.label == 0 for r in records)
    assert all("seg" not in r.path.parent.name for r in records)
    first = records[0]
    assert first == SliceRecord(
        path=oasis_root / "keras_png_slices_data" / "keras_png_slices_train"
        / "case_001_slice_0.nii.png",
        subject="001", slice=0, label=0, split="train",
    )


def test_oasis_only_requested_splits_in_requested_order(oasis_root: Path) -> None:
    records = discover(oasis_root, "oasis", ("test", "validate"))
    assert [(r.split, r.subject, r.slice) for r in records] == [
        ("test", "009", 0), ("validate", "007", 3)
    ]
    assert len(discover(oasis_root, "oasis", "train")) == 10  # a bare string is one split


def test_oasis_split_folders_directly_under_root(oasis_root: Path) -> None:
    direct = oasis_root / "keras_png_slices_data"
    assert [r.path for r in discover(direct, "oasis", ["train"])] == [
        r.path for r in discover(oasis_root, "oasis", ["train"])
    ]


def test_natural_key_orders_numbers_numerically() -> None:
    names = ["s_10", "s_9", "s_1", "t_0"]
    assert sorted(names, key=natural_key) == ["s_1", "s_9", "s_10", "t_0"]


def test_folder_layout_recursive_images_only(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for rel in ["a/img10.png", "a/img9.jpg", "b/deep/x.TIFF", "y.bmp", "z.jpeg", "w.tif"]:
        touch(root / rel)
    for rel in ["readme.md", ".hidden.png", ".cache/c.png", "a/.git/d.png", "b/data.npy"]:
        touch(root / rel)
    records = discover(root, "folder", ["train"])
    assert [r.path.relative_to(root).as_posix() for r in records] == [
        "a/img9.jpg", "a/img10.png", "b/deep/x.TIFF", "w.tif", "y.bmp", "z.jpeg"
    ]
    assert [r.subject for r in records] == ["img9", "img10", "x", "w", "y", "z"]
    assert {(r.label, r.split, r.slice) for r in records} == {(0, "train", 0)}


def test_error_root_not_set() -> None:
    message = error_of(None, "oasis", ["train"])
    assert message.startswith("dataset.root is not set")
    assert "keras_png_slices_train/" in message


def test_error_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert error_of(missing, "oasis", ["train"]) == (
        f"dataset.root={missing} does not exist; expected a folder holding keras_png_slices_train/ "
        "(OASIS layout: case_<subject>_slice_<n>.nii.png)"
    )
    assert "folder layout" in error_of(missing, "folder", ["train"])


def test_error_root_is_a_file(tmp_path: Path) -> None:
    file = touch(tmp_path / "file.png")
    assert "is not a folder" in error_of(file, "oasis", ["train"])


def test_error_wrong_folders_says_expected_and_found(tmp_path: Path) -> None:
    touch(tmp_path / "AD_NC" / "train" / "AD" / "1_1.jpeg")
    touch(tmp_path / "images" / "a.png")
    message = error_of(tmp_path, "oasis", ["train"])
    assert f"dataset.root={tmp_path} has no keras_png_slices_train/" in message
    assert "found: AD_NC/, images/" in message
    assert "OASIS layout" in message


def test_error_missing_one_requested_split(oasis_root: Path) -> None:
    test_folder = oasis_root / "keras_png_slices_data" / "keras_png_slices_test"
    (test_folder / "case_009_slice_0.nii.png").unlink()
    test_folder.rmdir()
    message = error_of(oasis_root, "oasis", ["train", "test"])
    assert "has no keras_png_slices_test/" in message
    assert "keras_png_slices_train/" in message  # listed among the folders found


def test_error_no_images(tmp_path: Path) -> None:
    (tmp_path / "keras_png_slices_train").mkdir()
    touch(tmp_path / "keras_png_slices_train" / "readme.txt")
    message = error_of(tmp_path, "oasis", ["train"])
    assert f"dataset.root={tmp_path} holds no images" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no images" in error_of(empty, "folder", ["train"])


def test_error_badly_named_image_suggests_folder_layout(tmp_path: Path) -> None:
    touch(tmp_path / "keras_png_slices_train" / "case_001_slice_0.nii.png")
    touch(tmp_path / "keras_png_slices_train" / "brain_01.png")
    message = error_of(tmp_path, "oasis", ["train"])
    assert "1 of the images in keras_png_slices_train/ are not named like" in message
    assert "brain_01.png" in message and "dataset.layout=folder" in message


def test_error_unknown_layout_and_split(oasis_root: Path) -> None:
    assert error_of(oasis_root, "adni2", ["train"]) == (
        "dataset.layout=adni2 is not one of: oasis, folder"
    )
    assert "dataset.splits" in error_of(oasis_root, "oasis", ["val"])
