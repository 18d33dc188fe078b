"""SliceDataModule: setup, batches in sampler order, exact resume, RNG hygiene, demo mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from braingan.data.datamodule import SliceDataModule
from braingan.data.layouts import DatasetError, SliceRecord
from braingan.data.manifest import read_manifest
from braingan.data.sampler import InfiniteSampler
from helpers.mri import write_adni, write_knee_folder, write_oasis


def heldout(dm: SliceDataModule) -> list[SliceRecord]:
    """The slices of `dm` (after setup) outside its training splits."""
    return [r for r in dm.records if r.split not in dm.splits]


def make_dm(root: Path, **kwargs) -> SliceDataModule:
    args = dict(resolution=16, batch_size=4, num_workers=0, seed=3, progress=False)
    return SliceDataModule(str(root), **{**args, **kwargs})


def batches(dm: SliceDataModule, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    iterator = iter(dm.train_dataloader())
    return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_follow_the_sampler(oasis_tree: Callable[..., Path], num_workers: int) -> None:
    dm = make_dm(oasis_tree(subjects=3, slices=4), num_workers=num_workers)
    dm.setup()
    assert len(dm.dataset) == 12 and dm.num_classes == 1
    images, labels = batches(dm, 1)[0]
    assert images.shape == (4, 1, 16, 16) and images.dtype == torch.uint8  # bytes; floats on the device
    assert labels.shape == (4,) and labels.dtype == torch.int64
    # image i (sorted by subject, slice) is the constant 10 * (i + 1): recover the indices
    indices = (images[:, 0, 0, 0].long() // 10 - 1).tolist()
    stream = iter(InfiniteSampler(12, seed=3))
    expected = [next(stream) for _ in range(4)]
    assert indices == expected
    assert torch.all(images == images[:, :, :1, :1])  # constant images stayed constant


def test_setup_reads_only_the_requested_splits_once(oasis_tree: Callable[..., Path]) -> None:
    dm = make_dm(oasis_tree(subjects=3, slices=4), splits=("validate", "test"))
    dm.setup()
    dataset = dm.dataset
    dm.setup("fit")
    assert dm.dataset is dataset  # decoded once
    assert [r.split for r in dataset.records] == ["validate"] * 4 + ["test"] * 4


def test_start_index_resumes_the_stream(oasis_tree: Callable[..., Path]) -> None:
    root = oasis_tree(subjects=3, slices=4)
    fresh = make_dm(root)
    first = torch.cat([b[0] for b in batches(fresh, 5)])  # 20 images, crosses an epoch boundary
    resumed = make_dm(root)
    resumed.start_index = 8  # two batches of 4 already consumed
    again = torch.cat([b[0] for b in batches(resumed, 3)])
    assert torch.equal(again, first[8:20])


def test_loader_never_touches_the_global_rng(oasis_tree: Callable[..., Path]) -> None:
    dm = make_dm(oasis_tree(subjects=2, slices=2), num_workers=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    batches(dm, 2)
    assert torch.equal(torch.get_rng_state(), state)


def test_real_images_are_evenly_spaced(oasis_tree: Callable[..., Path]) -> None:
    dm = make_dm(oasis_tree(subjects=1, slices=3))  # 1 train subject: 3 images
    reals = dm.real_images(2)
    assert reals.shape == (2, 1, 16, 16) and reals.dtype == torch.float32
    assert torch.equal(reals, torch.stack([dm.dataset[0][0], dm.dataset[2][0]]).float() / 127.5 - 1)
    assert torch.allclose(reals[:, 0, 5, 5], torch.tensor([10.0, 30.0]) / 127.5 - 1)
    cyclic = dm.real_images(7)  # fewer images than asked for: repeated in order
    assert torch.equal(cyclic[3:6], cyclic[0:3]) and cyclic.shape[0] == 7


class _Recorder(pl.LightningModule):
    """Records the first pixel of each image it is fed; no training."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[float] = []

    def training_step(self, batch, batch_idx):
        self.seen.extend(batch[0][:, 0, 0, 0].tolist())
        return (self.weight**2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_runs_under_a_lightning_trainer(oasis_tree: Callable[..., Path]) -> None:
    dm = make_dm(oasis_tree(subjects=3, slices=4))
    model = _Recorder()
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)  # an endless loader: the run ends on max_steps
    stream = iter(InfiniteSampler(12, seed=3))
    expected = [10 * (next(stream) + 1) for _ in range(16)]
    assert model.seen == expected


def test_demo_mode_builds_then_loads(tmp_path: Path) -> None:
    dm = SliceDataModule(
        str(tmp_path / "demo"),
        demo=True,
        demo_subjects=3,
        resolution=32,
        batch_size=8,
        num_workers=0,
        progress=False,
        splits=("train", "validate", "test"),
    )
    dm.prepare_data()
    assert (tmp_path / "demo" / ".demo_spec.json").is_file()
    dm.setup()
    assert len(dm.dataset) == 3 * 32
    assert {r.subject for r in dm.dataset.records} == {"001", "002", "003"}
    images, _ = batches(dm, 1)[0]
    assert images.shape == (8, 1, 32, 32)
    assert images.amax(dim=(1, 2, 3)).gt(0).any()  # brain pixels, not just background


def test_demo_without_root_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="dataset.root is not set"):
        SliceDataModule(None, demo=True, progress=False).setup()


# ----------------------------------------------------------------------------------------------
# Real naming schemes (fixture trees of MNI152 slices): splits, manifest, classes, bad input


def test_oasis_tree_counts_subjects_splits_and_manifest(tmp_path: Path) -> None:
    root = write_oasis(tmp_path / "OASIS")
    manifest = tmp_path / "run" / "manifest.csv"
    dm = make_dm(root, manifest_path=manifest, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert len(dm.dataset) == 3 * 11  # masks, the hidden file and README.txt are not slices
    assert [r.slice for r in dm.dataset.records[:11]] == list(range(11))  # slice_10 after slice_9
    assert {r.subject for r in heldout(dm)} == {"004", "005"}
    rows = read_manifest(manifest)
    assert len(rows) == 5 * 11
    assert {(r.subject, r.split) for r in rows} == {
        ("001", "train"),
        ("002", "train"),
        ("003", "train"),
        ("004", "validate"),
        ("005", "test"),
    }
    assert dm.class_names == [] and dm.num_classes == 1
    assert (dm.geometry.width, dm.geometry.height) == (256, 256)


def test_leak_across_splits_stops_setup(tmp_path: Path) -> None:
    root = write_oasis(tmp_path / "OASIS", subjects={"train": ["001", "002"], "validate": ["002"]}, slices=2)
    with pytest.raises(DatasetError, match=r"002 in train\+validate"):
        make_dm(root).setup()


def test_corrupt_png_is_listed_or_skipped(tmp_path: Path) -> None:
    root = write_oasis(tmp_path / "OASIS", slices=2, corrupt=True)
    with pytest.raises(DatasetError, match="1 image could not be read: case_099_slice_0.nii.png"):
        make_dm(root).setup()
    manifest = tmp_path / "manifest.csv"
    dm = make_dm(root, skip_bad=True, manifest_path=manifest)
    with pytest.warns(UserWarning, match="case_099_slice_0.nii.png"):
        dm.setup()
    assert len(dm.dataset) == 3 * 2
    assert "099" not in {r.subject for r in read_manifest(manifest)}  # the manifest lists what is used


def test_adni_tree_labels_classes_and_native_size(tmp_path: Path) -> None:
    root = write_adni(tmp_path / "ADNI", per_class=2, slices=3)
    dm = make_dm(root, layout="adni")
    dm.setup()
    assert len(dm.dataset) == 2 * 2 * 3 and dm.num_classes == 2 and dm.class_names == ["AD", "NC"]
    assert dm.dataset.labels.tolist() == [0] * 6 + [1] * 6
    assert (dm.geometry.width, dm.geometry.height, dm.geometry.fit) == (256, 240, "pad")
    assert {r.split for r in heldout(dm)} == {"test"}  # ADNI's own held-out split is kept
    image = dm.dataset.images[0, 0]  # [16, 16]: 256x240 scaled by 1/16 -> 16x15, padded
    assert image[0].max() == 0 or image[-1].max() == 0  # one black row of padding
    only_ad = make_dm(root, layout="adni", classes=["AD"])
    only_ad.setup()
    assert len(only_ad.dataset) == 6 and only_ad.num_classes == 1 and only_ad.class_names == ["AD"]
    info = dm.data_info()
    assert info["class_names"] == ["AD", "NC"] and info["geometry"]["height"] == 240


def test_balanced_loader_draws_classes_equally(tmp_path: Path) -> None:
    root = write_adni(tmp_path / "ADNI", per_class=2, slices=3)
    big = root / "AD_NC" / "train" / "NC"
    for n in range(12):  # NC gets 3x the slices of AD
        (big / f"9999_{n}.jpeg").write_bytes((big / sorted(p.name for p in big.iterdir())[0]).read_bytes())
    dm = make_dm(root, layout="adni", balance=True, batch_size=6)
    labels = torch.cat([b[1] for b in batches(dm, 6)])
    assert labels.eq(0).sum() == labels.eq(1).sum() == 18


def test_folder_holdout_is_by_subject_and_seeded(tmp_path: Path) -> None:
    root = write_knee_folder(tmp_path / "knee", patients=5, slices=4)
    dm = make_dm(root, layout="folder", holdout=0.4, split_seed=1)
    dm.setup()
    held = {r.subject for r in heldout(dm)}
    assert len(held) == 2 and len(heldout(dm)) == 8
    assert not held & {r.subject for r in dm.dataset.records}
    same = make_dm(root, layout="folder", holdout=0.4, split_seed=1)
    same.setup()
    assert {r.subject for r in heldout(same)} == held
    assert (dm.geometry.width, dm.geometry.height) == (260, 228)


def test_a_chosen_class_without_training_images_is_an_error(tmp_path: Path) -> None:
    root = write_adni(tmp_path / "ADNI", per_class=1, slices=2)
    for image in (root / "AD_NC" / "train" / "NC").iterdir():  # NC only in the test split
        image.rename(root / "AD_NC" / "test" / "NC" / image.name)
    (root / "AD_NC" / "train" / "NC").rmdir()
    with pytest.raises(DatasetError, match=r"class\(es\) \['NC'\] have no training images"):
        make_dm(root, layout="adni").setup()
