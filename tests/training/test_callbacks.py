import os

from braingan.training.callbacks import crossed_tick
from braingan.utils.io import atomic_path, kimg_tag


def test_crossed_tick():
    assert crossed_tick(0, 32, 0.032) == 0.032
    assert crossed_tick(32, 64, 0.032) == 0.064
    assert crossed_tick(0, 31, 0.032) is None
    assert crossed_tick(990, 1022, 1) == 1.0
    assert crossed_tick(1022, 1054, 1) is None
    assert crossed_tick(0, 100, None) is None and crossed_tick(0, 100, 0) is None
    # A step that jumps over several ticks reports the latest.
    assert crossed_tick(0, 100, 0.032) == 0.096


def test_kimg_tag_sorts_and_has_no_equals_sign():
    assert kimg_tag(50) == "000050"
    assert kimg_tag(50, every_kimg=20) == "000050"
    assert kimg_tag(0.128, every_kimg=0.032) == "000000.128"
    assert kimg_tag(0, every_kimg=0.5) == "000000.000"
    tags = [kimg_tag(k, 0.5) for k in (0, 0.5, 1, 1.5, 10)]
    assert tags == sorted(tags)


def test_atomic_path_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a" / "f.bin"
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    except RuntimeError:
        pass
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


def test_atomic_path_file_has_the_mode_of_a_plain_write(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "atomic.json") as tmp:
            tmp.write_text("{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777
    assert mode("atomic.json") == mode("plain.json") == 0o640
