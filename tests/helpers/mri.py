"""Fixture trees with the real file-naming schemes, filled with real brain MRI slices.

No OASIS or ADNI data exist on the test machines, so these builders write small trees that
follow the released layouts exactly (names, folders, sizes, formats) with axial slices of the
MNI152 template that nilearn ships. Importable from any test module (tests/ is on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def template_slice(index: int, brightness: float = 1.0) -> np.ndarray:
    """Axial MNI152 slice number `index` (within the brain's range), uint8 [256, 256]."""
    from braingan.data.demo import axial_template, slice_positions

    template = axial_template()
    positions = slice_positions(template, 40)
    image = template[positions[index % len(positions)]] * 255.0 * brightness
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def write_oasis(
    root: Path,  # becomes root/keras_png_slices_data/...
    subjects: dict[str, list[str]] | None = None,  # split -> subject ids
    slices: int = 11,  # slices 0..slices-1 per subject (>= 11 gives slice_10)
    corrupt: bool = False,  # add one truncated PNG to the training split
) -> Path:
    """The COMP3710 OASIS release: 256x256 PNGs, masks in keras_png_slices_seg_*, a hidden file."""
    subjects = subjects or {"train": ["001", "002", "003"], "validate": ["004"], "test": ["005"]}
    data = root / "keras_png_slices_data"
    for split, ids in subjects.items():
        for k, subject in enumerate(ids):
            for n in range(slices):
                image = template_slice(n + 2 * k)
                _save(data / f"keras_png_slices_{split}" / f"case_{subject}_slice_{n}.nii.png", image)
                mask = (image > 40).astype(np.uint8) * 85
                _save(data / f"keras_png_slices_seg_{split}" / f"seg_{subject}_slice_{n}.nii.png", mask)
    (data / "keras_png_slices_train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (data / "keras_png_slices_train" / "README.txt").write_text("not an image")
    if corrupt:
        good = (data / "keras_png_slices_train" / f"case_{subjects['train'][0]}_slice_0.nii.png").read_bytes()
        (data / "keras_png_slices_train" / "case_099_slice_0.nii.png").write_bytes(good[: len(good) // 2])
    return root


def write_adni(
    root: Path,  # becomes root/AD_NC/{train,test}/{AD,NC}/
    per_class: int = 2,  # training subjects per class (one test subject per class)
    slices: int = 6,  # slices per subject
) -> Path:
    """The ADNI AD/NC release: 256x240 grayscale JPEGs named <subject>_<slice>.jpeg."""
    base = root / "AD_NC"
    subject = 100000
    for split, count in (("train", per_class), ("test", 1)):
        for cls, brightness in (("AD", 0.7), ("NC", 1.0)):  # classes differ visibly
            for _ in range(count):
                subject += 1
                for n in range(slices):
                    image = template_slice(20 + n, brightness)[8:248]  # [240, 256]: height 240
                    _save(base / split / cls / f"{subject}_{n + 60}.jpeg", image, quality=95)
    return root


def write_knee_folder(root: Path, patients: int = 5, slices: int = 4) -> Path:
    """An AKOA-like folder: 260x228 (width x height) PNGs, names end in _<slice>.png."""
    for p in range(patients):
        for n in range(slices):
            image = np.asarray(Image.fromarray(template_slice(p + n)).resize((260, 228), Image.Resampling.BILINEAR))
            _save(root / f"OAI90{p:05d}_BaseLine_3_SAG_3D_DESS_LEFT.nii.gz_{n}.png", image)
    return root
