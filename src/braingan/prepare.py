"""Entry point: `python -m braingan.prepare input=... output=...` (what `make prepare` runs).

Turns 3-D MRI volumes (OASIS-1 Analyze .img/.hdr pairs, ADNI .nii/.nii.gz, any NIfTI) into the
OASIS PNG layout that `dataset=oasis dataset.root=<output>` trains on:

    <output>/keras_png_slices_{train,validate,test}/case_<case>_slice_<n>.nii.png
    <output>/subjects.csv     subject, case, split, volume (path relative to input), slices

n is the axial slice index in the canonical (RAS+) volume, not zero-padded. Each volume is
reoriented, windowed by percentiles of its foreground, cut into axial slices (an index range
and/or a minimum brain fraction per slice) and optionally padded/cropped onto a fixed canvas;
see `braingan.data.volumes`. The subject id is `subject_regex` searched in the path relative to
`input`; subjects, never single slices or volumes, are split (seeded) into train/validate/test.

Case ids: a subject with one volume keeps its id (`OAS1_0001`); a subject with several volumes
(sessions, visits, repeat scans) gets `<subject>-1`, `<subject>-2`, ... in natural path order,
so files never collide. All volumes of a subject go to the subject's split; subjects.csv maps
each case back to its subject.

The slices are written into a hidden staging folder inside `output` and moved into place when
every volume is done, so a failed run leaves no partial split folders. A non-empty `output` is
refused unless overwrite=true, which replaces only the split folders and subjects.csv.
Hydra composes conf/prepare.yaml; `main` hands the values to the plain function `prepare`.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from . import cli
from .confdir import CONF_DIR
from .data.layouts import OASIS_SPLITS, DatasetError
from .data.splits import split_subjects
from .data.volumes import VOLUME_PATTERNS, find_volumes, load_volume, volume_slices
from .utils.io import atomic_path

log = logging.getLogger(__name__)

# OASIS-1/2 ids (OAS1_0001) or ADNI ids (002_S_0295), anywhere in the path.
SUBJECT_REGEX = r"(?P<subject>OAS\d_\d{4}|\d{3}_S_\d{4})"
SPLIT_FRACTIONS = {"train": 0.8, "validate": 0.1, "test": 0.1}
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # usable in case_<id>_slice_<n>.nii.png
CSV_COLUMNS = ("subject", "case", "split", "volume", "slices")


@dataclass(frozen=True)
class Volume:
    """One input volume and the names it gets."""

    path: Path  # the volume file (.nii, .nii.gz, or the .img of an Analyze pair)
    relpath: str  # path relative to input, '/'-separated; what subject_regex is searched in
    subject: str  # subject id captured by subject_regex
    case: str  # id in the PNG names: subject, or subject-<k> when it has several volumes


def _compile(subject_regex: str) -> re.Pattern:
    try:
        return re.compile(subject_regex)
    except re.error as error:
        raise DatasetError(f"subject_regex='{subject_regex}' is not a valid regular expression: {error}") from None


def subject_of(relpath: str, regex: re.Pattern) -> str | None:
    """The subject id in `relpath`: group 'subject', else group 1, else the whole match."""
    match = regex.search(relpath)
    if match is None:
        return None
    if "subject" in regex.groupindex:
        return match["subject"]
    return match[1] if regex.groups else match[0]


def name_volumes(paths: Sequence[Path], root: Path, subject_regex: str) -> list[Volume]:
    """Subject and case id of every volume; one-line errors when the regex does not fit."""
    regex = _compile(subject_regex)
    relpaths = [p.relative_to(root).as_posix() for p in paths]
    subjects = [subject_of(r, regex) for r in relpaths]
    unmatched = [r for r, s in zip(relpaths, subjects) if not s]
    hint = "set subject_regex so that its group 'subject' (or group 1) captures the subject id"
    if len(unmatched) == len(relpaths):
        raise DatasetError(
            f"subject_regex='{subject_regex}' matches none of the {len(relpaths)} volumes under "
            f"input={root} (e.g. {relpaths[0]}); {hint}"
        )
    if unmatched:
        more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
        raise DatasetError(
            f"subject_regex='{subject_regex}' matches {len(relpaths) - len(unmatched)} of the "
            f"{len(relpaths)} volumes under input={root} but not {', '.join(unmatched[:3])}{more}; "
            f"{hint}, or narrow patterns to the volumes you want"
        )
    ids = cast(list[str], subjects)  # every volume matched (checked above)
    bad = sorted({s for s in ids if not SAFE_ID.match(s) or "_slice_" in s})
    if bad:
        raise DatasetError(
            f"subject_regex='{subject_regex}' captures subject ids unusable in file names "
            f"({', '.join(bad[:3])}); capture only letters, digits, '.', '_' and '-'"
        )
    count = {s: ids.count(s) for s in set(ids)}
    seen: dict[str, int] = {}
    volumes = []
    for path, relpath, subject in zip(paths, relpaths, ids):
        seen[subject] = seen.get(subject, 0) + 1
        case = subject if count[subject] == 1 else f"{subject}-{seen[subject]}"
        volumes.append(Volume(path=path, relpath=relpath, subject=subject, case=case))
    cases = [v.case for v in volumes]
    clash = sorted({c for c in cases if cases.count(c) > 1})
    if clash:
        raise DatasetError(
            f"case ids {', '.join(clash[:3])} name two volumes (a subject id ends in -<k>); change subject_regex"
        )
    return volumes


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise DatasetError(f"output={output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DatasetError(
            f"output={output} is not empty; pass overwrite=true to replace its "
            "keras_png_slices_{train,validate,test}/ and subjects.csv, or choose a new folder"
        )


def _install(staging: Path, output: Path) -> None:
    """Move the finished split folders from staging into output, replacing older ones."""
    for split in OASIS_SPLITS:
        final = output / f"keras_png_slices_{split}"
        if final.exists():
            shutil.rmtree(final)
        (staging / final.name).rename(final)


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def prepare(
    input: str | os.PathLike,  # folder of volumes, searched recursively
    output: str | os.PathLike,  # folder to write the OASIS layout into
    patterns: Sequence[str] = VOLUME_PATTERNS,  # file-name globs of the volumes
    subject_regex: str = SUBJECT_REGEX,  # re.search on the path relative to input
    slice_range: Sequence[float | int | None] | None = None,  # [lo, hi) axial indices, or
    # fractions of the axis; None = all
    min_brain_fraction: float | None = 0.1,  # keep slices with >= this foreground share
    slice_step: int = 1,  # then every step-th selected slice
    percentiles: Sequence[float] = (0.5, 99.5),  # intensity window, foreground percentiles
    foreground_threshold: float = 0.0,  # 0 = nonzero voxels are foreground
    orientation: str | None = None,  # stored axis codes overriding the header
    canvas: Sequence[int] | None = None,  # [width, height]; None = native size
    splits: Mapping[str, float] = SPLIT_FRACTIONS,  # split -> fraction of the subjects
    seed: int = 0,  # seeds the subject split
    overwrite: bool = False,  # replace the slices of an earlier run
    progress: bool = True,  # tqdm bar over the volumes
) -> Path:
    """Write the axial PNG slices of every volume under `input` into `output`; returns `output`."""
    if input is None or str(input) == "":
        raise DatasetError("input is not set; pass input=/path/to/volumes (searched recursively)")
    if output is None or str(output) == "":
        raise DatasetError("output is not set; pass output=/path/to/new/folder for the PNG slices")
    root = Path(input).expanduser().absolute()
    output = Path(output).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(f"input={root} is not a folder of volumes")
    unknown = sorted(set(splits) - set(OASIS_SPLITS))
    if unknown:
        raise DatasetError(f"splits has {unknown}; the OASIS layout has splits {list(OASIS_SPLITS)}")
    _check_output(output, overwrite)
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = find_volumes(root, patterns)
    if not paths:
        raise DatasetError(f"input={root} holds no files matching patterns={patterns}")
    volumes = name_volumes(paths, root, subject_regex)
    split_of = split_subjects((v.subject for v in volumes), dict(splits), seed)

    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".prepare-{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    rows: list[dict] = []
    done = False
    try:
        for split in OASIS_SPLITS:
            (staging / f"keras_png_slices_{split}").mkdir(parents=True)
        for volume in tqdm(volumes, desc="slicing volumes", unit="volume", disable=not progress):
            data = load_volume(volume.path, orientation)  # [X, Y, Z] RAS+
            slices = volume_slices(
                data,
                slice_range=slice_range,
                min_brain_fraction=min_brain_fraction,
                slice_step=slice_step,
                percentiles=percentiles,
                foreground_threshold=foreground_threshold,
                canvas=canvas,
            )
            split = split_of[volume.subject]
            folder = staging / f"keras_png_slices_{split}"
            for n, image in slices.items():  # image: uint8 [H, W]
                Image.fromarray(image).save(folder / f"case_{volume.case}_slice_{n}.nii.png")
            rows.append(
                dict(subject=volume.subject, case=volume.case, split=split, volume=volume.relpath, slices=len(slices))
            )
        empty = [r["volume"] for r in rows if r["slices"] == 0]
        if len(empty) == len(rows):
            raise DatasetError(
                f"no slices selected in any of the {len(rows)} volumes (slice_range={slice_range}, "
                f"min_brain_fraction={min_brain_fraction}); widen slice_range or lower min_brain_fraction"
            )
        if empty:
            log.warning("no slices selected in %d volume(s): %s", len(empty), ", ".join(empty[:3]))
        _install(staging, output)
        _write_csv(rows, output / "subjects.csv")
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done and created and not any(output.iterdir()):
            output.rmdir()  # a failed run leaves no trace
    per_split = {s: sum(r["slices"] for r in rows if r["split"] == s) for s in OASIS_SPLITS}
    subjects = {s: len({r["subject"] for r in rows if r["split"] == s}) for s in OASIS_SPLITS}
    log.info(
        "wrote %d slices of %d volumes (%d subjects) to %s: %s",
        sum(per_split.values()),
        len(rows),
        len(split_of),
        output,
        ", ".join(f"{s} {per_split[s]} slices/{subjects[s]} subjects" for s in OASIS_SPLITS),
    )
    return output


def prepare_from_config(cfg: DictConfig) -> Path:
    """`prepare` with the values of a composed conf/prepare.yaml."""
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    values.pop("hydra", None)
    return prepare(**values)


@hydra.main(config_path=str(CONF_DIR), config_name="prepare", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("prepare"):
        prepare_from_config(cfg)


def main() -> None:
    cli.hydra_entry("prepare", "prepare", _hydra_main)


if __name__ == "__main__":
    main()
