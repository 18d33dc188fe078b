"""Discovery of slices: OASIS naming and ordering, ignored folders/files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from braingan.data.layouts import DatasetError, LayoutOptions, SliceRecord, discover, natural_key


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
    touch(data / "keras_png_slices_train" / "notes.txt")  # not an image: ignored
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
        ("001", 0),
        ("001", 1),
        ("001", 2),
        ("001", 9),
        ("001", 10),
        ("002", 0),
        ("002", 1),
        ("002", 2),
        ("002", 9),
        ("002", 10),
    ]
    assert all(r.split == "train" and r.label == 0 for r in records)
    assert all("seg" not in r.path.parent.name for r in records)
    first = records[0]
    assert first == SliceRecord(
        path=oasis_root / "keras_png_slices_data" / "keras_png_slices_train" / "case_001_slice_0.nii.png",
        subject="001",
        slice=0,
        label=0,
        split="train",
    )


def test_oasis_only_requested_splits_in_requested_order(oasis_root: Path) -> None:
    records = discover(oasis_root, "oasis", ("test", "validate"))
    assert [(r.split, r.subject, r.slice) for r in records] == [("test", "009", 0), ("validate", "007", 3)]
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
        "a/img9.jpg",
        "a/img10.png",
        "b/deep/x.TIFF",
        "w.tif",
        "y.bmp",
        "z.jpeg",
    ]
    assert [r.subject for r in records] == ["img9", "img10", "x", "w", "y", "z"]
    assert {(r.label, r.split, r.slice) for r in records} == {(0, "train", 0)}


def test_error_root_not_set() -> None:
    message = error_of(None, "oasis", ["train"])
    assert message.startswith("dataset.root is not set")
    assert "keras_png_slices_train/" in message


def test_error_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    message = error_of(missing, "oasis", ["train"])
    assert message.startswith(
        f"dataset.root={missing} does not exist; expected a folder holding "
        "keras_png_slices_train/, keras_png_slices_validate/"
    )
    assert "case_<subject>_slice_<n>.nii.png" in message
    assert "folder layout" in error_of(missing, "folder", ["train"])
    assert "<split>/<class>/<subject>_<slice>.jpeg" in error_of(missing, "adni", ["train"])


def test_error_root_is_a_file(tmp_path: Path) -> None:
    file = touch(tmp_path / "file.png")
    assert "is not a folder" in error_of(file, "oasis", ["train"])


def test_error_wrong_folders_says_expected_and_found(tmp_path: Path) -> None:
    touch(tmp_path / "AD_NC" / "train" / "AD" / "1_1.jpeg")
    touch(tmp_path / "images" / "a.png")
    touch(tmp_path / ".git" / "x.png")  # hidden folders are not listed
    message = error_of(tmp_path, "oasis", ["train"])
    assert f"dataset.root={tmp_path} has none of the folders keras_png_slices_train/" in message
    assert "found: AD_NC/, images/;" in message
    assert "OASIS layout" in message
    message = error_of(tmp_path / "images", "adni", ["train"])
    assert "has none of the folders train/, test/" in message and "found: no folders" in message


def test_error_missing_one_requested_split(oasis_root: Path) -> None:
    test_folder = oasis_root / "keras_png_slices_data" / "keras_png_slices_test"
    (test_folder / "case_009_slice_0.nii.png").unlink()
    test_folder.rmdir()
    message = error_of(oasis_root, "oasis", ["train", "test"])
    assert "no images for split(s) ['test']" in message
    assert "splits found: ['train', 'validate']" in message


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
    assert "brain_01.png" in message and "dataset=folder" in message


def test_error_unknown_layout(oasis_root: Path) -> None:
    assert error_of(oasis_root, "adni2", ["train"]) == ("dataset.layout=adni2 is not one of: oasis, adni, folder")
    assert "dataset.splits" in error_of(oasis_root, "oasis", ["val"])


def test_oasis_all_splits_when_none_requested(oasis_root: Path) -> None:
    records = discover(oasis_root, "oasis")
    assert [r.split for r in records] == ["train"] * 10 + ["validate", "test"]


# ----------------------------------------------------------------------------------------------
# ADNI AD/NC


@pytest.fixture
def adni_root(tmp_path: Path) -> Path:
    """AD_NC/{train,test}/{AD,NC}/<subject>_<slice>.jpeg, the real release's naming."""
    base = tmp_path / "ADNI" / "AD_NC"
    for split, cls, subject in [
        ("train", "AD", "218391"),
        ("train", "NC", "1182968"),
        ("test", "AD", "388206"),
        ("test", "NC", "1253958"),
    ]:
        for n in (78, 9, 100, 10):
            touch(base / split / cls / f"{subject}_{n}.jpeg")
    touch(base / "train" / "AD" / ".DS_Store")
    touch(base / "train" / "NC" / "Thumbs.db")
    return tmp_path / "ADNI"


def test_adni_labels_subjects_slices_and_splits(adni_root: Path) -> None:
    records = discover(adni_root, "adni")
    assert [(r.split, r.class_name, r.label, r.subject, r.slice) for r in records[:5]] == [
        ("train", "AD", 0, "218391", 9),
        ("train", "AD", 0, "218391", 10),
        ("train", "AD", 0, "218391", 78),
        ("train", "AD", 0, "218391", 100),
        ("train", "NC", 1, "1182968", 9),
    ]
    assert len(records) == 16
    assert {(r.split, r.class_name) for r in records[8:]} == {("test", "AD"), ("test", "NC")}
    assert records[0].path == adni_root / "AD_NC" / "train" / "AD" / "218391_9.jpeg"


def test_adni_classes_select_and_order_labels(adni_root: Path) -> None:
    only_ad = discover(adni_root / "AD_NC", "adni", ["train"], classes=["AD"])
    assert {(r.class_name, r.label) for r in only_ad} == {("AD", 0)} and len(only_ad) == 4
    reordered = discover(adni_root, "adni", ["train"], classes=["NC", "AD"])
    assert {(r.class_name, r.label) for r in reordered} == {("NC", 0), ("AD", 1)}
    message = error_of(adni_root, "adni", ["train"], classes=["MCI"])
    assert "dataset.classes=['MCI']" in message and "['AD', 'NC']" in message


def test_adni_empty_class_folder_is_named(adni_root: Path) -> None:
    (adni_root / "AD_NC" / "train" / "MCI").mkdir()
    touch(adni_root / "AD_NC" / "train" / "MCI" / "notes.txt")
    message = error_of(adni_root, "adni")
    assert "class folder train/MCI/ holds no images" in message


def test_adni_badly_named_image(adni_root: Path) -> None:
    touch(adni_root / "AD_NC" / "test" / "NC" / "scan.jpeg")
    assert "test/NC/ are not named like <subject>_<slice>.jpeg (e.g. scan.jpeg)" in error_of(adni_root, "adni")


def test_classes_on_unlabelled_data_is_an_error(oasis_root: Path) -> None:
    assert "has no class labels" in error_of(oasis_root, "oasis", classes=["AD"])


# ----------------------------------------------------------------------------------------------
# Any folder: labels from sub-folders, subject ids from a regex


@pytest.fixture
def knee_root(tmp_path: Path) -> Path:
    """AKOA-like names: one volume per (patient, visit, side), slice number at the end."""
    root = tmp_path / "knee"
    for side in ("left", "right"):
        for patient in ("OAI9014797", "OAI9021450"):
            for n in (2, 10):
                touch(root / side / f"{patient}_BaseLine_3_SAG_3D_DESS_{side.upper()}.nii.gz_{n}.png")
    touch(root / "left" / "._resource_fork.png")
    return root


def test_folder_default_subject_strips_trailing_slice_number(knee_root: Path) -> None:
    records = discover(knee_root, "folder")
    assert len(records) == 8
    first = records[0]
    assert first.subject == "OAI9014797_BaseLine_3_SAG_3D_DESS_LEFT.nii.gz" and first.slice == 2
    assert {r.split for r in records} == {"train"} and {r.label for r in records} == {0}


def test_folder_labels_from_sub_folders(knee_root: Path) -> None:
    records = discover(knee_root, "folder", options=LayoutOptions(labels=True))
    assert sorted({(r.class_name, r.label) for r in records}) == [("left", 0), ("right", 1)]
    (knee_root / "empty_class").mkdir()
    message = error_of(knee_root, "folder", options=LayoutOptions(labels=True))
    assert "class folder(s) empty_class/ hold no images" in message


def test_folder_subject_regex(knee_root: Path) -> None:
    options = LayoutOptions(subject_regex=r"(?P<subject>OAI\d+)_.*_(?P<slice>\d+)\.png$")
    records = discover(knee_root, "folder", options=options)
    assert sorted({r.subject for r in records}) == ["OAI9014797", "OAI9021450"]
    assert sorted({r.slice for r in records}) == [2, 10]
    message = error_of(knee_root, "folder", options=LayoutOptions(subject_regex=r"^case_(\d+)"))
    assert "dataset.subject_regex='^case_(\\d+)' matches none of the image paths" in message
    touch(knee_root / "left" / "stray.png")
    message = error_of(knee_root, "folder", options=LayoutOptions(subject_regex=r"(OAI\d+)"))
    assert "matches 8 of the 9 image paths" in message and "left/stray.png" in message
    assert "not a valid regular expression" in error_of(
        knee_root, "folder", options=LayoutOptions(subject_regex="(unclosed")
    )


def test_folder_numbered_images_of_one_prefix_are_separate_subjects(tmp_path: Path) -> None:
    for n in range(1, 4):
        touch(tmp_path / "flat" / f"IMG_{n:04d}.png")
    with pytest.warns(UserWarning, match="each image is taken as its own subject"):
        records = discover(tmp_path / "flat", "folder")
    assert [r.subject for r in records] == ["IMG_0001", "IMG_0002", "IMG_0003"]


def test_folder_labels_warn_about_images_outside_class_folders(knee_root: Path) -> None:
    touch(knee_root / "loose.png")
    with pytest.warns(UserWarning, match="1 image.* directly in dataset.root=.* left out"):
        records = discover(knee_root, "folder", options=LayoutOptions(labels=True))
    assert len(records) == 8


def test_classes_named_twice_is_an_error(adni_root: Path) -> None:
    assert "names a class twice" in error_of(adni_root, "adni", classes=["AD", "AD"])
