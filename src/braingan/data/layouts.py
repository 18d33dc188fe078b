"""Finding the slice images of a dataset on disk, one record per image.

A layout maps a folder to `SliceRecord`s (path, subject, slice index, label, split). Keeping the
subject with every slice is what lets training, evaluation and the memorization audit split by
subject: neighbouring slices of one brain are nearly identical, so a split by slice leaks.

Layouts:
    oasis   root/keras_png_slices_{train,validate,test}/case_<subject>_slice_<n>.nii.png,
            also accepted one level down in root/keras_png_slices_data/; the
            keras_png_slices_seg_* mask folders are ignored.
    folder  any PNG/JPEG/TIFF/BMP image under root, recursively; hidden files and folders are
            skipped; subject = file stem, label 0, split 'train'.

Every problem with the input raises `DatasetError` with one line that names the config key and
the layout that was expected, because this is the first thing a new user gets wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
OASIS_SPLITS = ("train", "validate", "test")
OASIS_NAME = re.compile(r"^case_(?P<subject>.+?)_slice_(?P<slice>\d+)\.nii\.png$")
OASIS_HINT = "(OASIS layout: case_<subject>_slice_<n>.nii.png)"
FOLDER_HINT = "(folder layout: .png/.jpg/.jpeg/.tif/.tiff/.bmp images, searched recursively)"


class DatasetError(ValueError):
    """The dataset configuration or files are unusable; the message says how to fix it."""


@dataclass(frozen=True)
class SliceRecord:
    """One 2-D slice image and what is known about it."""

    path: Path     # the image file
    subject: str   # subject id as written in the file name, e.g. "001"
    slice: int     # slice index within the subject (0 when unknown)
    label: int     # class label for conditional training (0 when unlabelled)
    split: str     # "train", "validate" or "test"


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically: slice_9 before slice_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _oasis_expects(splits: Sequence[str]) -> str:
    folders = ", ".join(f"keras_png_slices_{s}/" for s in splits)
    return f"a folder holding {folders} {OASIS_HINT}"


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _find_oasis(root: Path, splits: Sequence[str]) -> list[SliceRecord]:
    unknown = [s for s in splits if s not in OASIS_SPLITS]
    if unknown:
        raise DatasetError(
            f"dataset.splits has {unknown}; the OASIS layout has splits {list(OASIS_SPLITS)}"
        )
    wanted = [f"keras_png_slices_{s}" for s in splits]
    base = root
    if not any((root / w).is_dir() for w in wanted) and (root / "keras_png_slices_data").is_dir():
        base = root / "keras_png_slices_data"
    missing = [w for w in wanted if not (base / w).is_dir()]
    if missing:
        found = sorted(f"{p.name}/" for p in base.iterdir() if p.is_dir())
        raise DatasetError(
            f"dataset.root={root} has no {', '.join(m + '/' for m in missing)} "
            f"(also looked in keras_png_slices_data/); found: {', '.join(found) or 'no folders'}; "
            f"expected {_oasis_expects(splits)}"
        )
    records: list[SliceRecord] = []
    for split, folder in zip(splits, wanted):
        found_here: list[SliceRecord] = []
        strangers: list[str] = []
        for name in os.listdir(base / folder):
            if not _is_image(name):
                continue
            match = OASIS_NAME.match(name)
            if match is None:
                strangers.append(name)
                continue
            found_here.append(
                SliceRecord(
                    path=base / folder / name,
                    subject=match["subject"],
                    slice=int(match["slice"]),
                    label=0,
                    split=split,
                )
            )
        if strangers:
            raise DatasetError(
                f"dataset.root={root}: {len(strangers)} of the images in {folder}/ are not "
                f"named like case_<subject>_slice_<n>.nii.png (e.g. {sorted(strangers)[0]}); "
                "use dataset.layout=folder for arbitrary names"
            )
        found_here.sort(key=lambda r: (natural_key(r.subject), r.slice))
        records.extend(found_here)
    return records


def _find_folder(root: Path, splits: Sequence[str]) -> list[SliceRecord]:
    paths: list[Path] = []
    seen: set[str] = set()
    for here, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a symlink loop: do not walk the same folder twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths.extend(Path(here) / f for f in files if _is_image(f))
    paths.sort(key=lambda p: natural_key(p.relative_to(root).as_posix()))
    records = [SliceRecord(path=p, subject=p.stem, slice=0, label=0, split="train") for p in paths]
    return [r for r in records if r.split in splits]


def _folder_expects(splits: Sequence[str]) -> str:
    return f"a folder of images {FOLDER_HINT}"


Finder = Callable[[Path, Sequence[str]], list[SliceRecord]]  # (root, splits) -> records
Expects = Callable[[Sequence[str]], str]                     # splits -> what root should hold

# A new layout (adni, labelled folders, ...) is one more finder registered here.
_LAYOUTS: dict[str, tuple[Finder, Expects]] = {
    "oasis": (_find_oasis, _oasis_expects),
    "folder": (_find_folder, _folder_expects),
}


def discover(
    root: str | Path | None,        # dataset folder (config key dataset.root)
    layout: str = "oasis",          # one of the names in _LAYOUTS (config key dataset.layout)
    splits: Sequence[str] = ("train",),  # which splits to return, in this order
) -> list[SliceRecord]:
    """List the slices of `root` for `layout`, sorted by split, subject, then slice number."""
    if layout not in _LAYOUTS:
        raise DatasetError(f"dataset.layout={layout} is not one of: {', '.join(_LAYOUTS)}")
    find, expects = _LAYOUTS[layout]
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if root is None or str(root) == "":
        raise DatasetError(
            f"dataset.root is not set; pass dataset.root=/path/to/data, {expects(splits)}"
        )
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset.root={root} does not exist; expected {expects(splits)}")
    if not root.is_dir():
        raise DatasetError(f"dataset.root={root} is not a folder; expected {expects(splits)}")
    records = find(root, splits)
    if not records:
        raise DatasetError(
            f"dataset.root={root} holds no images for dataset.splits={list(splits)} "
            f"with dataset.layout={layout}; expected {expects(splits)}"
        )
    return records
