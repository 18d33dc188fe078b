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


def write_manifest(records: Sequence[SliceRecord], path: str | os.PathLike) -> Path:
    """Write the records as CSV (columns COLUMNS, one row per slice), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in records:
            writer.writerow([str(r.path), r.subject, r.slice, r.label, r.class_name, r.split])
    return path


def read_manifest(path: str | os.PathLike) -> list[SliceRecord]:
    """The records of a manifest written by `write_manifest`, in file order."""
    with open(path, newline="") as handle:
        return [
            SliceRecord(
                Path(row["path"]), row["subject"], int(row["slice"]), int(row["label"]), row["split"], row["class"]
            )
            for row in csv.DictReader(handle)
        ]
