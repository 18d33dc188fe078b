import os
from pathlib import Path

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

    def mode(name):
        return (tmp_path / name).stat().st_mode & 0o777

    assert mode("atomic.json") == mode("plain.json") == 0o640


def test_null_path_hands_the_target_over_and_writes_nothing(tmp_path):
    from braingan.utils.io import null_path

    target = tmp_path / "best_fid.ckpt"
    with null_path(target) as path:
        assert path == target
    assert list(tmp_path.iterdir()) == []


def test_kimg_checkpoint_writes_last_and_snapshots_under_rundir_names(tmp_path):
    from types import SimpleNamespace

    from braingan.rundir import RunDir
    from braingan.training.callbacks import KimgCheckpoint

    run = RunDir(tmp_path / "run")
    saved = []

    class Trainer:
        is_global_zero, should_stop, world_size = True, False, 1

        def save_checkpoint(self, path, weights_only=False):
            saved.append(Path(path).parent)
            Path(path).write_bytes(b"ckpt")

    module = SimpleNamespace(prev_nimg=0, cur_nimg=64, last_good_ckpt=None)
    KimgCheckpoint(run.checkpoints, snapshot_kimg=0.064, last_kimg=0.032).on_train_batch_end(
        Trainer(), module, None, None, 0
    )
    assert sorted(p.name for p in run.checkpoints.iterdir()) == sorted(
        [run.last.name, run.snapshot(kimg_tag(0.064, 0.064)).name]
    )
    assert run.snapshot(kimg_tag(0.064, 0.064)).read_bytes() == b"ckpt" and module.last_good_ckpt == str(run.last)
    assert saved == [run.checkpoints]  # written beside its target, then renamed
