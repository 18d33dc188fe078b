"""Checkpoint reading: what a file is when it is not a checkpoint, and the newest intact one when it is damaged."""
from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from braingan.checkpoint import (
    CheckpointError,
    describe_file,
    load_generator,
    newest_intact_checkpoint,
    read_checkpoint,
)
from braingan.utils.errors import MissingFileError

REAL = Path(__file__).parent / "fixtures" / "conditional_v0" / "last.ckpt"  # a real training checkpoint


@pytest.mark.parametrize("name,content,what", [
    ("notes.txt", b"what I tried today\n", "a text file"),
    ("manifest.csv", b"path,subject,slice,label,class,split\n/a.png,s1,0,0,,train\n", "a text file (CSV: a manifest.csv?)"),
    ("metrics.json", b'{"fid": 12.5}\n', "a text file (JSON)"),
    ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
    ("x.jpeg", b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"),
    ("x.npy", b"\x93NUMPY\x01\x00" + bytes(64), "a NumPy array (.npy)"),
    ("x.nii.gz", gzip.compress(b"volume"), "a gzip file (a .nii.gz volume?)"),
    ("random.bin", bytes(range(256)) * 4, "a binary file that is not a zip archive"),
    ("embedding.npz", None, "a NumPy .npz archive"),
    ("slices.zip", None, "a zip archive that torch.save did not write"),
])
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, name, content, what):
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, w=np.zeros(3))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("case_001_slice_0.nii.png", b"\x89PNG")
    else:
        path.write_bytes(content)
    assert describe_file(path) == what
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, setting="resume")
    assert str(info.value) == f"resume={path} is not a braingan checkpoint: it is {what}"


def test_pytorch_files_that_are_not_training_checkpoints_are_refused(tmp_path):
    state_dict = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, state_dict)
    with pytest.raises(CheckpointError, match="it is a PyTorch file without the 'state_dict', 'hyper_parameters', 'braingan'"):
        read_checkpoint(state_dict)
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": 1}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="it is a plain pickle, not a torch.save zip archive"):
        read_checkpoint(legacy)
    with pytest.raises(MissingFileError, match="ckpt=.*nothing.ckpt: no such checkpoint file"):
        read_checkpoint(tmp_path / "nothing.ckpt")


def test_a_damaged_checkpoint_names_the_newest_intact_one_of_its_run(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("kimg_000000.032.ckpt", "kimg_000000.064.ckpt"):
        shutil.copyfile(REAL, folder / name)
    (folder / "kimg_000000.096.ckpt").write_bytes(REAL.read_bytes()[:1000])  # a snapshot cut short too
    last = folder / "last.ckpt"
    last.write_bytes(REAL.read_bytes()[: REAL.stat().st_size // 2])
    assert newest_intact_checkpoint(folder, exclude=last) == folder / "kimg_000000.064.ckpt"
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(last, setting="resume")
    assert str(info.value) == (
        f"resume={last} is damaged (PyTorch cannot read it: PytorchStreamReader failed reading zip archive: failed "
        f"finding central directory); the newest intact checkpoint of this run is {folder / 'kimg_000000.064.ckpt'} "
        f"(0.064 kimg): use resume={folder / 'kimg_000000.064.ckpt'}"
    )
    last.write_bytes(b"")  # a write killed before its first byte
    with pytest.raises(CheckpointError, match=r"is damaged \(an empty file .*\); the newest intact checkpoint"):
        read_checkpoint(last)
    for path in folder.glob("kimg_*"):
        path.unlink()
    with pytest.raises(CheckpointError, match="no intact checkpoint found beside it"):
        read_checkpoint(last)
    # Outside a run's checkpoints/ folder nothing beside the file is offered (or unpickled).
    elsewhere = tmp_path / "Downloads"
    elsewhere.mkdir()
    shutil.copyfile(REAL, elsewhere / "last.ckpt")
    (elsewhere / "x.ckpt").write_bytes(REAL.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(elsewhere / "x.ckpt")
    assert str(info.value).endswith("failed finding central directory)")


def test_the_readers_of_an_intact_checkpoint_agree():
    full, mapped = read_checkpoint(REAL), read_checkpoint(REAL, mmap=True)
    assert full["braingan"]["cur_nimg"] == mapped["braingan"]["cur_nimg"] > 0
    assert load_generator(REAL).c_dim == full["hyper_parameters"]["net"]["c_dim"] == 2
