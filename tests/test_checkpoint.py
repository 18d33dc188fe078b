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
from braingan.rundir import RunDir
from braingan.utils.errors import MissingFileError

REAL = Path(__file__).parent / "fixtures" / "conditional_v0" / "last.ckpt"  # a real training checkpoint


@pytest.mark.parametrize(
    "name,content,what",
    [
        ("notes.txt", b"what I tried today\n", "a text file"),
        (
            "manifest.csv",
            b"path,subject,slice,label,class,split\n/a.png,s1,0,0,,train\n",
            "a text file (CSV: a manifest.csv?)",
        ),
        ("metrics.json", b'{"fid": 12.5}\n', "a text file (JSON)"),
        ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
        ("x.jpeg", b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"),
        ("x.npy", b"\x93NUMPY\x01\x00" + bytes(64), "a NumPy array (.npy)"),
        ("x.nii.gz", gzip.compress(b"volume"), "a gzip file (a .nii.gz volume?)"),
        ("random.bin", bytes(range(256)) * 4, "a binary file that is not a zip archive"),
        ("embedding.npz", None, "a NumPy .npz archive"),
        ("slices.zip", None, "a zip archive that torch.save did not write"),
    ],
)
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
    with pytest.raises(
        CheckpointError, match="it is a PyTorch file without the 'state_dict', 'hyper_parameters', 'braingan'"
    ):
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
    assert newest_intact_checkpoint(RunDir(folder.parent), exclude=last) == folder / "kimg_000000.064.ckpt"
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


# ---------------------------------------------------------------------------------------------
# The format: versions, our entry, the typed reader

RUN_V1 = Path(__file__).parent / "fixtures" / "run_v1" / "checkpoints" / "last.ckpt"  # written by commit 653fc40


def _rewritten(tmp_path: Path, source: Path, **entry) -> Path:
    """A copy of `source` with fields of our entry replaced (None removes one)."""
    from braingan.checkpoint import ENTRY

    state = torch.load(source, map_location="cpu", weights_only=False)
    for key, value in entry.items():
        if value is None:
            state[ENTRY].pop(key, None)
        else:
            state[ENTRY][key] = value
    path = tmp_path / "checkpoints" / source.name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "path,c_dim,d_mapping_layers,class_names,width,height",
    [
        (REAL, 2, 0, ["AD", "NC"], 256, 240),  # conditional, written by commit 9aea301
        (RUN_V1, 0, 8, [], 256, 256),  # unconditional run folder, written by commit 653fc40
    ],
)
def test_checkpoints_written_before_the_format_version_read_as_version_1(
    path, c_dim, d_mapping_layers, class_names, width, height
):
    from braingan.checkpoint import ENTRY, FORMAT_VERSION_KEY, read_info

    raw = read_checkpoint(path, mmap=True)
    assert FORMAT_VERSION_KEY not in raw[ENTRY]  # truly an old file
    info = read_info(path)
    assert info.format_version == 1
    assert info.cur_nimg == raw[ENTRY]["cur_nimg"] == 16 and info.kimg == pytest.approx(0.016)  # two steps of 8
    assert (info.net.img_resolution, info.net.z_dim, info.net.w_dim, info.net.c_dim) == (32, 8, 8, c_dim)
    assert info.net.d_mapping_layers == d_mapping_layers and info.net_dict == raw["hyper_parameters"]["net"]
    assert (info.resolution, info.channels, info.fit, info.splits) == (32, 1, "pad", ["train"])
    assert info.class_names == class_names
    assert (info.geometry.width, info.geometry.height) == (width, height)
    assert info.train == raw["hyper_parameters"]["train"] and info.train["batch_size"] == 8
    assert isinstance(info.run_config, dict) and info.run_config == raw[ENTRY]["run_config"]


def test_the_run_of_a_checkpoint_is_its_run_folder_or_the_folder_of_a_loose_file():
    from braingan.checkpoint import read_info
    from braingan.rundir import RunDir

    assert read_info(RUN_V1).run == RunDir(RUN_V1.parent.parent)  # <run>/checkpoints/last.ckpt -> <run>
    assert read_info(RUN_V1).run.manifest.is_file()
    assert read_info(REAL).run == RunDir(REAL.parent)  # a loose file: its own folder


def test_a_checkpoint_of_a_newer_format_is_refused_in_one_line(tmp_path):
    from braingan.checkpoint import FORMAT_VERSION, read_info
    from braingan.training.module import StyleGAN2Module

    newer = _rewritten(tmp_path, REAL, format_version=FORMAT_VERSION + 1)
    expected = f"written by a newer braingan (format {FORMAT_VERSION + 1}); upgrade"
    for read in (
        lambda: read_checkpoint(newer, setting="resume"),
        lambda: read_info(newer, setting="resume"),
        lambda: load_generator(newer),
    ):
        with pytest.raises(CheckpointError) as info:
            read()
        assert str(info.value).endswith(expected) and "\n" not in str(info.value)
    assert str(info.value) == f"ckpt={newer} was {expected}"
    # Lightning's own reader (load_from_checkpoint, and trainer.fit's resume) meets the same check in the hook.
    with pytest.raises(CheckpointError, match=r"newer braingan \(format 3\); upgrade"):
        StyleGAN2Module.load_from_checkpoint(newer, map_location="cpu", weights_only=False)
    # The current version itself reads.
    assert (
        read_info(_rewritten(tmp_path / "same", REAL, format_version=FORMAT_VERSION)).format_version == FORMAT_VERSION
    )


def test_the_writer_and_the_reader_of_our_entry_round_trip():
    from braingan.checkpoint import ENTRY, FORMAT_VERSION, TrainingState, training_state, write_training_state

    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": None}
    checkpoint: dict = {}
    write_training_state(checkpoint, cur_nimg=1234, batch_idx=7, nonfinite_total=2, rng=rng, run_config={"kimg": 1.0})
    assert checkpoint[ENTRY]["format_version"] == FORMAT_VERSION == 2
    assert "rng_per_rank" not in checkpoint[ENTRY] and "rank_digests" not in checkpoint[ENTRY]  # one process
    state = training_state(checkpoint)
    assert (state.format_version, state.cur_nimg, state.batch_idx, state.nonfinite_total) == (2, 1234, 7, 2)
    assert state.kimg == pytest.approx(1.234) and state.run_config == {"kimg": 1.0} and state.rng is rng
    assert state.rng_per_rank is None and state.rank_digests is None
    write_training_state(
        checkpoint,
        cur_nimg=8,
        batch_idx=1,
        nonfinite_total=0,
        rng=rng,
        rng_per_rank=[rng, rng],
        rank_digests=[{"G.w": "a"}, {"G.w": "a"}],
    )
    state = training_state(checkpoint)
    assert state.rng_per_rank == [rng, rng] and state.rank_digests == [{"G.w": "a"}, {"G.w": "a"}]
    assert state.run_config is None  # written without one
    # A version-1 entry (no format_version) and no entry at all read with the defaults.
    assert training_state({ENTRY: {"cur_nimg": 16}}) == TrainingState(format_version=1, cur_nimg=16)
    assert training_state({}) == TrainingState()


def test_the_module_saves_the_current_format_and_loads_its_own_entry():
    from braingan.checkpoint import ENTRY, FORMAT_VERSION, training_state
    from braingan.training.module import StyleGAN2Module

    module = StyleGAN2Module.load_from_checkpoint(RUN_V1, map_location="cpu", weights_only=False, strict=True)
    module.cur_nimg, module.batch_idx, module.nonfinite_total, module.run_config = 40, 5, 1, {"seed": 3}
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[ENTRY]["format_version"] == FORMAT_VERSION
    assert training_state(checkpoint).run_config == {"seed": 3}
    other = StyleGAN2Module(module.net_cfg, module.train_cfg)
    other.on_load_checkpoint(checkpoint)
    assert (other.cur_nimg, other.prev_nimg, other.batch_idx, other.nonfinite_total) == (40, 40, 5, 1)
    assert torch.equal(other._pending_rng["torch"], checkpoint[ENTRY]["rng"]["torch"])


def test_the_run_v1_checkpoint_loads_into_the_module_strictly():
    from braingan.training.module import StyleGAN2Module

    module = StyleGAN2Module.load_from_checkpoint(RUN_V1, map_location="cpu", weights_only=False, strict=True)
    raw = read_checkpoint(RUN_V1)
    assert (module.cur_nimg, module.batch_idx) == (16, raw["braingan"]["batch_idx"]) and module.batch_idx == 2
    assert module.net_cfg.z_dim == 8 and module.net_cfg.c_dim == 0
    for key, value in module.state_dict().items():
        assert torch.equal(value, raw["state_dict"][key]), key
    assert module._pending_rng is not None and torch.equal(
        module._pending_rng["torch"], raw["braingan"]["rng"]["torch"]
    )
