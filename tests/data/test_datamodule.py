"""SliceDataModule: setup, batches in sampler order, exact resume, RNG hygiene, demo mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from braingan.data.datamodule import SliceDataModule
from braingan.data.layouts import DatasetError
from braingan.data.sampler import InfiniteSampler


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
    assert images.shape == (4, 1, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (4,) and labels.dtype == torch.int64
    assert images.min() >= -1 and images.max() <= 1
    # image i (sorted by subject, slice) is the constant 10 * (i + 1): recover the indices
    indices = ((images[:, 0, 0, 0] + 1) * 127.5 / 10 - 1).round().long().tolist()
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
    assert torch.equal(reals, torch.stack([dm.dataset[0][0], dm.dataset[2][0]]))
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
        max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)  # an endless loader: the run ends on max_steps
    stream = iter(InfiniteSampler(12, seed=3))
    expected = [(10 * (next(stream) + 1)) / 127.5 - 1 for _ in range(16)]
    assert model.seen == pytest.approx(expected, abs=1e-6)


def test_demo_mode_builds_then_loads(tmp_path: Path) -> None:
    dm = SliceDataModule(
        str(tmp_path / "demo"), demo=True, demo_subjects=3, resolution=32, batch_size=8,
        num_workers=0, progress=False, splits=("train", "validate", "test"),
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
