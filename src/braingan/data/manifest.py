"""manifest.csv: every slice a run knows of, with its subject, slice, label and split.

Written into each run folder so the split a model was trained and evaluated on is on record
and can be checked (or reused by evaluation) without re-running discovery.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from braingan.data.layouts import SliceRecord
from braingan.utils.io import atomic_path

COLUMNS = ("path", "subject", "slice", "label", "class", "split")


def write_manifest(
    records: Sequence[SliceRecord],
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,  # paths below this folder are written relative to it; None = as they are
) -> Path:
    """Write the records as CSV (columns COLUMNS, one row per slice), atomically."""
    path = Path(path)
    base = Path(root).absolute() if root is not None else None
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in records:
            file = Path(r.path)
            if base is not None and file.absolute().is_relative_to(base):
                file = file.absolute().relative_to(base)
            writer.writerow([file.as_posix(), r.subject, r.slice, r.label, r.class_name, r.split])
    return path


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,  # the folder that relative paths are below; None = leave them relative
) -> list[SliceRecord]:
    """The records of a manifest written by `write_manifest`, in file order."""
    base = Path(root).expanduser() if root is not None else None
    with open(path, newline="") as handle:
        return [
            SliceRecord(
                base / row["path"] if base is not None else Path(row["path"]),
                row["subject"],
                int(row["slice"]),
                int(row["label"]),
                row["split"],
                row["class"],
            )
            for row in csv.DictReader(handle)
        ]
