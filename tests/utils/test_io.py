"""Atomic writes: temporary files beside the target, plain modes, and what a killed write leaves behind."""

from __future__ import annotations

import errno
import os

import pytest

from braingan.utils.io import TEMPORARY_NAME, atomic_path, is_no_space, remove_stale_temporaries, temporary_file


def test_atomic_writes_go_through_a_temporary_file_beside_the_target(tmp_path):
    target = tmp_path / "ckpts" / "last.ckpt"
    old = os.umask(0o027)
    try:
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and TEMPORARY_NAME.match(tmp.name).group("final") == "last.ckpt"
            tmp.write_text("new")
    finally:
        os.umask(old)
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o640"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed halfway")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    stale = [temporary_file(tmp_path / "last.ckpt"), temporary_file(tmp_path / "kimg_000000.064.ckpt")]
    keep = [tmp_path / "last.ckpt", tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".x.tmp"]
    for path in keep:
        path.write_text("keep")
    assert remove_stale_temporaries(tmp_path) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_disk_full_errors_are_recognized():
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_no_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_no_space(OSError(errno.EACCES, "Permission denied"))
    assert not is_no_space(RuntimeError("No space left on device"))
