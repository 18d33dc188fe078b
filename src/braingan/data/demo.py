"""The embedded default dataset: real brain MRI slices built offline from the MNI152 template.

nilearn ships the MNI152 2009 T1 template (197 x 233 x 189 voxels at 1 mm, skull-stripped,
floats in [0, 1]); nothing is downloaded. `build_demo_dataset` turns it into an OASIS-shaped
dataset so that `make train` works out of the box and every code path meant for OASIS is
exercised by it:

    root/keras_png_slices_{train,validate,test}/case_<subject>_slice_<n>.nii.png
    root/.demo_spec.json      the spec it was built with (hidden, so no layout lists it)

Each pseudo-subject is a seeded deformation of the template (`deform.py`), `slices_per_subject`
axial slices evenly spaced over the axial range holding substantial brain (OASIS has 32 per
subject), oriented like a radiological viewer (anterior at the top, patient's right on the
image's left), 8-bit, brain centered in a zero-padded 256 x 256 frame. Subjects are split
80/10/10 by subject, never by slice.

The folder is written once: it is built in a temporary sibling and renamed into place, so an
interrupted build never leaves a half dataset, and a later call with the same spec returns at once.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from braingan.data.deform import apply_deformation, sample_deformation, spline_coefficients
from braingan.data.layouts import DatasetError

BUILDER_VERSION = 1  # bump whenever the images this module writes would change
DEMO_SEED = 0  # the demo set's identity (deformations, subject split); independent of the training seed on purpose
SPEC_FILE = ".demo_spec.json"  # marker inside root recording the spec of the build
FRAME = 256  # output images are FRAME x FRAME
BRAIN_FRACTION = 0.3  # slices whose brain area >= this x the largest are "substantial"


@functools.lru_cache(maxsize=1)
def axial_template() -> np.ndarray:
    """The MNI152 T1 template as axial slices, [Z, 256, 256] float32 in [0, 1], read-only.

    Row 0 is anterior and column 0 the patient's right (radiological view); z runs
    inferior -> superior. The brain's bounding box is centered in the frame.
    """
    from nilearn.datasets import load_mni152_template  # heavy import, only when building

    volume = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    volume = np.clip(volume, 0.0, 1.0)  # [X, Y, Z], RAS+ (x -> right)
    axial = np.ascontiguousarray(volume[::-1, ::-1, :].transpose(2, 1, 0))  # [Z, Y, X] flipped
    inside = np.nonzero(axial.max(axis=0) > 0)  # brain support in the plane
    top, left = inside[0].min(), inside[1].min()
    height, width = inside[0].max() - top + 1, inside[1].max() - left + 1
    out = np.zeros((axial.shape[0], FRAME, FRAME), dtype=np.float32)  # [Z, 256, 256]
    r0, c0 = (FRAME - height) // 2, (FRAME - width) // 2
    out[:, r0 : r0 + height, c0 : c0 + width] = axial[:, top : top + height, left : left + width]
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def _template_coefficients() -> np.ndarray:
    """Cubic spline coefficients of every template slice, [Z, 256, 256], computed once."""
    coefficients = spline_coefficients(axial_template())
    coefficients.setflags(write=False)
    return coefficients


def slice_positions(template: np.ndarray, count: int) -> np.ndarray:
    """`count` evenly spaced axial indices over the range holding substantial brain, [count]."""
    area = (template > 0.05).sum(axis=(1, 2))  # [Z] brain pixels per slice
    substantial = np.nonzero(area >= BRAIN_FRACTION * area.max())[0]
    return np.rint(np.linspace(substantial[0], substantial[-1], count)).astype(np.int64)


def demo_subject_splits(num_subjects: int, seed: int) -> list[str]:
    """Seeded 80/10/10 split BY SUBJECT; returns the split name of each subject index."""
    n_held = max(1, round(0.1 * num_subjects)) if num_subjects >= 3 else 0
    order = np.random.default_rng(np.random.SeedSequence([seed, 0])).permutation(num_subjects)
    splits = ["train"] * num_subjects
    for rank, subject in enumerate(order[: 2 * n_held]):
        splits[int(subject)] = "validate" if rank < n_held else "test"
    return splits


def _spec(num_subjects: int, slices_per_subject: int, seed: int) -> dict[str, int]:
    return {
        "builder_version": BUILDER_VERSION,
        "num_subjects": num_subjects,
        "slices_per_subject": slices_per_subject,
        "seed": seed,
    }


def _read_spec(root: Path) -> dict | None:
    try:
        return json.loads((root / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_subject(out_dir: Path, index: int, split: str, positions: np.ndarray, seed: int) -> None:
    """Deform the template for subject `index` and write its slices (at `positions`) as PNGs."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    template = axial_template()
    deformation = sample_deformation(rng, FRAME)
    z = np.clip(positions + deformation.z_shift, 0, len(template) - 1)  # [S]
    images = apply_deformation(template[z], deformation, _template_coefficients()[z])
    folder = out_dir / f"keras_png_slices_{split}"
    for n, image in enumerate(images):  # image: [256, 256] uint8
        Image.fromarray(image).save(folder / f"case_{index + 1:03d}_slice_{n}.nii.png")


def build_demo_dataset(
    root: Path,
    num_subjects: int = 80,  # pseudo-subjects; split 80/10/10 into train/validate/test
    slices_per_subject: int = 32,  # axial slices per subject, as in OASIS
    seed: int = 0,  # fixes deformations and the subject split
    progress: bool = True,  # show a tqdm bar while building
) -> Path:
    """Build (or reuse) the demo dataset in `root` and return `root`.

    Returns immediately when `root/.demo_spec.json` records the same spec. A different spec
    rebuilds. A non-empty `root` that was not written by this function is never overwritten.
    """
    if num_subjects < 1 or slices_per_subject < 1:
        raise ValueError("build_demo_dataset needs num_subjects >= 1 and slices_per_subject >= 1")
    root = Path(root).expanduser().absolute()
    spec = _spec(num_subjects, slices_per_subject, seed)
    if _read_spec(root) == spec:
        return root
    _check_replaceable(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for split in ("train", "validate", "test"):
            (staging / f"keras_png_slices_{split}").mkdir(parents=True)
        splits = demo_subject_splits(num_subjects, seed)
        positions = slice_positions(axial_template(), slices_per_subject)  # [S] template z
        _template_coefficients()  # computed once, before the threads start
        workers = max(1, min(4, os.cpu_count() or 1))
        with (
            ThreadPoolExecutor(workers) as pool,
            tqdm(total=num_subjects, desc="building demo dataset", unit="subject", disable=not progress) as bar,
        ):
            jobs = [pool.submit(_write_subject, staging, i, splits[i], positions, seed) for i in range(num_subjects)]
            try:
                for job in jobs:
                    job.result()
                    bar.update(1)
            except BaseException:  # a failure or Ctrl-C: do not finish the queued subjects
                for job in jobs:
                    job.cancel()
                raise
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        _swap_into_place(staging, root, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier demo build."""
    if root.exists() and (not root.is_dir() or (_read_spec(root) is None and any(root.iterdir()))):
        raise DatasetError(
            f"dataset.root={root} exists and is not a demo dataset folder (no {SPEC_FILE}); "
            "refusing to overwrite it: point dataset.root at a new or empty folder"
        )


def _swap_into_place(staging: Path, root: Path, spec: dict[str, int]) -> None:
    """Rename the finished build to `root`, replacing an older demo build if there is one."""
    if _read_spec(root) == spec:  # another process finished the same build first
        return
    _check_replaceable(root)
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        root.rename(old)
    try:
        staging.rename(root)
    except OSError:
        if _read_spec(root) != spec:  # lost a race to a different build: surface the error
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def default_demo_root() -> Path:
    """Where `dataset=demo` keeps its PNGs: $BRAINGAN_CACHE/demo or ~/.cache/braingan/demo."""
    return Path(os.environ.get("BRAINGAN_CACHE", "~/.cache/braingan")).expanduser() / "demo"


if __name__ == "__main__":  # `make demo-data`
    print(build_demo_dataset(default_demo_root()))
