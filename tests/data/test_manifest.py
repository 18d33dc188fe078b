"""manifest.csv: the columns, one row per slice, and a lossless round trip."""

from __future__ import annotations

import csv
from pathlib import Path

from braingan.data.layouts import SliceRecord
from braingan.data.manifest import read_manifest, write_manifest


def test_manifest_round_trip_and_columns(tmp_path: Path) -> None:
    records = [
        SliceRecord(tmp_path / "train" / "AD" / "218391_78.jpeg", "218391", 78, 0, "train", "AD"),
        SliceRecord(tmp_path / "test" / "NC" / "1182968_9.jpeg", "1182968", 9, 1, "test", "NC"),
        SliceRecord(tmp_path / "a, b.png", "a, b", 0, 0, "validate"),  # a comma survives quoting
    ]
    path = write_manifest(records, tmp_path / "run" / "manifest.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "subject", "slice", "label", "class", "split"]
    assert rows[1] == [str(records[0].path), "218391", "78", "0", "AD", "train"]
    assert len(rows) == 4
    assert read_manifest(path) == records
    assert not list((tmp_path / "run").glob(".*.tmp"))  # written atomically, no leftovers


def test_a_manifest_relative_to_its_data_folder_reads_back_below_any_other(tmp_path: Path) -> None:
    data = tmp_path / "ADNI" / "AD_NC"
    records = [
        SliceRecord(data / "train" / "AD" / "218391_78.jpeg", "218391", 78, 0, "train", "AD"),
        SliceRecord(tmp_path / "elsewhere" / "x_1.jpeg", "x", 1, 1, "test", "NC"),  # not below the folder
    ]
    path = write_manifest(records, tmp_path / "manifest.csv", root=data)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == ["train/AD/218391_78.jpeg", str(tmp_path / "elsewhere" / "x_1.jpeg")]
    assert read_manifest(path, data) == records
    moved = tmp_path / "moved"
    assert [r.path for r in read_manifest(path, moved)] == [moved / "train/AD/218391_78.jpeg", records[1].path]
    assert read_manifest(path)[0].path == Path("train/AD/218391_78.jpeg")  # no root: as written
