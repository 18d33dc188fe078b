"""Finding the slice images of a dataset on disk, one record per image.

A layout maps a folder to `SliceRecord`s (path, subject, slice index, label, split). Keeping the
subject with every slice is what lets training, evaluation and the memorization audit split by
subject: neighbouring slices of one brain are nearly identical, so a split by slice leaks.

Layouts:
    oasis   root/keras_png_slices_{train,validate,test}/case_<subject>_slice_<n>.nii.png,
            also accepted one level down in root/keras_png_slices_data/; the
            keras_png_slices_seg_* mask folders are ignored. n is not zero-padded.
    adni    root/{train,test}/<class>/<subject>_<slice>.jpeg (the AD_NC release: classes AD
            and NC, 256x240 JPEGs), also accepted one level down in root/AD_NC/. The label is
            the class folder.
    folder  any PNG/JPEG/TIFF/BMP image under root, recursively. With labels=True the first
            folder level below root names the class. The subject comes from `subject_regex`
            (re.search on the path relative to root; named group `subject` or group 1, optional
            group `slice`); without one, from the file stem minus a trailing slice number
            (`knee_0123_16.png` -> subject knee_0123, slice 16). Every image is split 'train';
            the data module makes a seeded held-out split by subject.

Hidden files and folders and non-image files are ignored everywhere. Every problem with the
input raises `DatasetError` with one line that names the config key and what was expected,
because this is the first thing a new user gets wrong.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from braingan.utils.errors import UsageError
from braingan.utils.io import walk_visible

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
OASIS_SPLITS = ("train", "validate", "test")
ADNI_SPLITS = ("train", "test")
OASIS_NAME = re.compile(r"^case_(?P<subject>.+?)_slice_(?P<slice>\d+)\.nii\.png$")
ADNI_NAME = re.compile(r"^(?P<subject>.+)_(?P<slice>\d+)$")  # on the stem: 218391_78
TRAILING_SLICE = re.compile(r"^(?P<subject>.+?)[_\-](?:slice[_\-]?)?(?P<slice>\d+)$")
OASIS_HINT = "(OASIS layout: case_<subject>_slice_<n>.nii.png)"
ADNI_HINT = "(ADNI layout: <split>/<class>/<subject>_<slice>.jpeg)"
FOLDER_HINT = "(folder layout: .png/.jpg/.jpeg/.tif/.tiff/.bmp images, searched recursively)"


class DatasetError(UsageError):
    """The dataset configuration or files are unusable; the message says how to fix it."""


@dataclass(frozen=True)
class SliceRecord:
    """One 2-D slice image and what is known about it."""

    path: Path  # the image file
    subject: str  # subject id as written in the file name, e.g. "001"
    slice: int  # slice index within the subject (0 when unknown)
    label: int  # class index for conditional training (0 when unlabelled)
    split: str  # "train", "validate" or "test"
    class_name: str = ""  # the class folder name, e.g. "AD" ("" when unlabelled)


@dataclass(frozen=True)
class LayoutOptions:
    """What a layout may need beyond the root folder (config keys dataset.*)."""

    labels: bool = False  # folder layout: first folder level below root = class
    subject_regex: str | None = None  # folder layout: subject id from the relative path


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically: slice_9 before slice_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _visible_dirs(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def _found(folder: Path) -> str:
    return ", ".join(f"{name}/" for name in _visible_dirs(folder)) or "no folders"


def _sorted(records: list[SliceRecord]) -> list[SliceRecord]:
    return sorted(records, key=lambda r: (natural_key(r.subject), r.slice, natural_key(r.path.name)))


# ----------------------------------------------------------------------------------------------
# OASIS


def _oasis_expects() -> str:
    folders = ", ".join(f"keras_png_slices_{s}/" for s in OASIS_SPLITS)
    return f"a folder holding {folders} (at least the training split) {OASIS_HINT}"


def _find_oasis(root: Path, options: LayoutOptions) -> list[SliceRecord]:
    names = [f"keras_png_slices_{s}" for s in OASIS_SPLITS]
    base = root
    if not any((root / n).is_dir() for n in names) and (root / "keras_png_slices_data").is_dir():
        base = root / "keras_png_slices_data"
    present = [(s, n) for s, n in zip(OASIS_SPLITS, names) if (base / n).is_dir()]
    if not present:
        raise DatasetError(
            f"dataset.root={root} has none of the folders {', '.join(n + '/' for n in names)} "
            f"(also looked in keras_png_slices_data/); found: {_found(base)}; "
            f"expected {_oasis_expects()}"
        )
    records: list[SliceRecord] = []
    for split, folder in present:
        strangers: list[str] = []
        here: list[SliceRecord] = []
        for name in os.listdir(base / folder):
            if not _is_image(name):
                continue
            match = OASIS_NAME.match(name)
            if match is None:
                strangers.append(name)
                continue
            here.append(SliceRecord(base / folder / name, match["subject"], int(match["slice"]), 0, split))
        if strangers:
            raise DatasetError(
                f"dataset.root={root}: {len(strangers)} of the images in {folder}/ are not "
                f"named like case_<subject>_slice_<n>.nii.png (e.g. {sorted(strangers)[0]}); "
                "use dataset=folder for arbitrary names"
            )
        records.extend(_sorted(here))
    return records


# ----------------------------------------------------------------------------------------------
# ADNI AD/NC


def _adni_expects() -> str:
    return (
        f"a folder holding {', '.join(s + '/' for s in ADNI_SPLITS)} each with one folder "
        f"per class (AD/, NC/) {ADNI_HINT}"
    )


def _find_adni(root: Path, options: LayoutOptions) -> list[SliceRecord]:
    base = root
    if not any((root / s).is_dir() for s in ADNI_SPLITS) and (root / "AD_NC").is_dir():
        base = root / "AD_NC"
    present = [s for s in ADNI_SPLITS if (base / s).is_dir()]
    if not present:
        raise DatasetError(
            f"dataset.root={root} has none of the folders {', '.join(s + '/' for s in ADNI_SPLITS)} "
            f"(also looked in AD_NC/); found: {_found(base)}; expected {_adni_expects()}"
        )
    records: list[SliceRecord] = []
    for split in present:
        classes = _visible_dirs(base / split)
        if not classes:
            raise DatasetError(f"dataset.root={root}: {split}/ has no class folders; expected {_adni_expects()}")
        for class_name in classes:
            folder = base / split / class_name
            here: list[SliceRecord] = []
            strangers: list[str] = []
            for name in os.listdir(folder):
                if not _is_image(name):
                    continue
                match = ADNI_NAME.match(Path(name).stem)
                if match is None:
                    strangers.append(name)
                    continue
                here.append(SliceRecord(folder / name, match["subject"], int(match["slice"]), 0, split, class_name))
            if strangers:
                raise DatasetError(
                    f"dataset.root={root}: {len(strangers)} of the images in {split}/{class_name}/ "
                    f"are not named like <subject>_<slice>.jpeg (e.g. {sorted(strangers)[0]}); "
                    "use dataset=folder for arbitrary names"
                )
            if not here:
                raise DatasetError(
                    f"dataset.root={root}: the class folder {split}/{class_name}/ holds no images; "
                    "remove it or add its images"
                )
            records.extend(_sorted(here))
    return records


# ----------------------------------------------------------------------------------------------
# Any folder


def _folder_expects() -> str:
    return f"a folder of images {FOLDER_HINT}"


def _walk_images(root: Path) -> list[Path]:
    paths = [Path(here) / f for here, files in walk_visible(root) for f in files if _is_image(f)]
    return sorted(paths, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _subject_from_regex(pattern: re.Pattern, relative: str) -> tuple[str, int] | None:
    match = pattern.search(relative)
    if match is None:
        return None
    groups = match.groupdict()
    subject = groups.get("subject") or (match.group(1) if pattern.groups else match.group(0))
    slice_text = groups.get("slice")
    return subject, int(slice_text) if slice_text and slice_text.isdigit() else 0


def _find_folder(root: Path, options: LayoutOptions) -> list[SliceRecord]:
    paths = _walk_images(root)
    if options.labels:
        classes = _visible_dirs(root)
        if not classes:
            raise DatasetError(
                f"dataset.root={root} has no sub-folders but dataset.labels=true; expected one "
                f"folder per class {FOLDER_HINT}"
            )
        counts = {c: 0 for c in classes}
        for p in paths:
            top = p.relative_to(root).parts[0]
            if top in counts:
                counts[top] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise DatasetError(
                f"dataset.root={root}: the class folder(s) {', '.join(e + '/' for e in empty)} "
                "hold no images; remove them or add their images"
            )
        loose = [p for p in paths if len(p.relative_to(root).parts) == 1]
        if loose:
            warnings.warn(
                f"dataset.labels=true: {len(loose)} image(s) directly in dataset.root={root} belong "
                f"to no class folder and are left out (e.g. {loose[0].name})",
                stacklevel=3,
            )
        paths = [p for p in paths if len(p.relative_to(root).parts) > 1]
    pattern = None
    if options.subject_regex:
        try:
            pattern = re.compile(options.subject_regex)
        except re.error as error:
            raise DatasetError(
                f"dataset.subject_regex='{options.subject_regex}' is not a valid regular expression: {error}"
            ) from None
    records: list[SliceRecord] = []
    unmatched: list[str] = []
    for p in paths:
        relative = p.relative_to(root).as_posix()
        if pattern is not None:
            parsed = _subject_from_regex(pattern, relative)
            if parsed is None:
                unmatched.append(relative)
                continue
            subject, slice_index = parsed
        else:
            match = TRAILING_SLICE.match(p.stem)
            subject, slice_index = (match["subject"], int(match["slice"])) if match else (p.stem, 0)
        class_name = p.relative_to(root).parts[0] if options.labels else ""
        records.append(SliceRecord(p, subject, slice_index, 0, "train", class_name))
    if pattern is None and len(records) > 1 and len({r.subject for r in records}) == 1:
        # IMG_0001.png ... IMG_0020.png: the trailing number is an image number, not a slice.
        warnings.warn(
            f"dataset.root={root}: every image name is <one prefix>_<number>, so each image is "
            "taken as its own subject; set dataset.subject_regex if images share subjects",
            stacklevel=3,
        )
        records = [replace(r, subject=r.path.stem, slice=0) for r in records]
    if unmatched and paths:
        matched = len(paths) - len(unmatched)
        what = "none of the" if matched == 0 else f"{matched} of the {len(paths)}"
        raise DatasetError(
            f"dataset.subject_regex='{options.subject_regex}' matches {what} image paths "
            f"(relative to dataset.root, e.g. {unmatched[0]}); it must match every path and "
            "capture the subject id as group 'subject' or group 1"
        )
    return records


# ----------------------------------------------------------------------------------------------
# Registry and entry point

Finder = Callable[[Path, LayoutOptions], list[SliceRecord]]  # (root, options) -> all records
Expects = Callable[[], str]  # what root should hold

_LAYOUTS: dict[str, tuple[Finder, Expects]] = {
    "oasis": (_find_oasis, _oasis_expects),
    "adni": (_find_adni, _adni_expects),
    "folder": (_find_folder, _folder_expects),
}


def _with_labels(records: list[SliceRecord], classes: Sequence[str] | None) -> list[SliceRecord]:
    """Keep the wanted classes and number them: in `classes` order, else sorted by name."""
    names = sorted({r.class_name for r in records}, key=natural_key)
    if classes is None:
        if names == [""]:
            return records
        chosen = names
    else:
        chosen = list(classes)
        if len(set(chosen)) != len(chosen):
            raise DatasetError(f"dataset.classes={chosen} names a class twice")
        if names == [""]:
            raise DatasetError(
                f"dataset.classes={chosen} but this dataset has no class labels "
                "(use dataset=adni, or dataset=folder with dataset.labels=true)"
            )
        unknown = [c for c in chosen if c not in names]
        if unknown or not chosen:
            raise DatasetError(
                f"dataset.classes={chosen}: {unknown or 'empty list'} not among the classes found: {names}"
            )
    index = {name: i for i, name in enumerate(chosen)}
    return [replace(r, label=index[r.class_name]) for r in records if r.class_name in index]


def discover(
    root: str | Path | None,  # dataset folder (config key dataset.root)
    layout: str = "oasis",  # oasis | adni | folder (config key dataset.layout)
    splits: Sequence[str] | str | None = None,  # splits to return in this order; None = all found
    classes: Sequence[str] | None = None,  # class names to keep, in label order; None = all
    options: LayoutOptions | None = None,  # layout-specific settings
) -> list[SliceRecord]:
    """List the slices of `root` for `layout`, sorted by split, subject, then slice number."""
    if layout not in _LAYOUTS:
        raise DatasetError(f"dataset.layout={layout} is not one of: {', '.join(_LAYOUTS)}")
    find, expects = _LAYOUTS[layout]
    if root is None or str(root) == "":
        raise DatasetError(f"dataset.root is not set; pass dataset.root=/path/to/data, {expects()}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset.root={root} does not exist; expected {expects()}")
    if not root.is_dir():
        raise DatasetError(f"dataset.root={root} is not a folder; expected {expects()}")
    records = _with_labels(find(root, options or LayoutOptions()), classes)
    if splits is not None:
        splits = (splits,) if isinstance(splits, str) else tuple(splits)
        order = {s: i for i, s in enumerate(splits)}
        found = sorted({r.split for r in records})
        records = sorted((r for r in records if r.split in order), key=lambda r: order[r.split])
        empty = [s for s in splits if not any(r.split == s for r in records)]
        if empty:
            raise DatasetError(
                f"dataset.root={root} holds no images for split(s) {empty} of dataset.splits="
                f"{list(splits)} with dataset.layout={layout} (splits found: {found or 'none'}); "
                f"expected {expects()}"
            )
    elif not records:
        raise DatasetError(f"dataset.root={root} holds no images for dataset.layout={layout}; expected {expects()}")
    return records
