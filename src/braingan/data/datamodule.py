"""The LightningDataModule: discover slices, decode them once, feed an endless resumable loader.

Plain constructor arguments (no Hydra here): the config layer instantiates this class. The
training loader draws from `InfiniteSampler`, so training is measured in images rather than
epochs and resumes exactly: the training module sets `start_index` (indices this rank already
consumed) before the loader is built.

Distributed training: Lightning wraps any sampler in a DistributedSampler unless the Trainer is
created with `use_distributed_sampler=False`; that wrapper needs a finite sampler, so the Trainer
must set it to False. This module already splits the stream by rank itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from braingan.data.dataset import SliceDataset
from braingan.data.demo import build_demo_dataset
from braingan.data.layouts import DatasetError, discover
from braingan.data.sampler import InfiniteSampler

DEMO_SEED = 0  # the demo set's identity; independent of the training seed on purpose


class SliceDataModule(pl.LightningDataModule):
    """Slices of one dataset as batches of (img [B, C, R, R] in [-1, 1], label [B] int64)."""

    def __init__(
        self,
        root: str | None,                    # dataset folder; with demo=True, the demo cache folder
        layout: str = "oasis",               # "oasis" or "folder" (see layouts.py)
        splits: Sequence[str] = ("train",),  # splits that make up the training set
        resolution: int = 256,               # images are resized to resolution x resolution
        img_channels: int = 1,               # 1 = grayscale, 3 = RGB
        batch_size: int = 32,                # per process
        num_workers: int = 2,                # DataLoader worker processes; 0 = main process
        seed: int = 0,                       # shuffling seed of the sample stream
        demo: bool = False,                  # build the embedded MNI152 demo set into root first
        demo_subjects: int = 80,             # pseudo-subjects in the demo set
        progress: bool = True,               # tqdm bars while building / decoding
    ) -> None:
        super().__init__()
        self.root = root
        self.layout = "oasis" if demo else layout  # the demo set is written in the OASIS layout
        self.splits = (splits,) if isinstance(splits, str) else tuple(splits)
        self.resolution = resolution
        self.img_channels = img_channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.demo = demo
        self.demo_subjects = demo_subjects
        self.progress = progress
        self.start_index: int = 0  # indices already consumed by this rank; set on resume
        self.dataset: SliceDataset | None = None

    def _build_demo(self) -> None:
        if self.root is None or str(self.root) == "":
            raise DatasetError(
                "dataset.root is not set; with dataset.demo=true it is the folder that caches "
                "the demo slices (it is created if missing)"
            )
        build_demo_dataset(
            Path(self.root), num_subjects=self.demo_subjects, seed=DEMO_SEED, progress=self.progress
        )

    def prepare_data(self) -> None:
        """Build the demo set once per node (Lightning calls this on local rank 0 only)."""
        if self.demo:
            self._build_demo()

    def setup(self, stage: str | None = None) -> None:
        """Discover and decode the slices; later calls are no-ops."""
        if self.dataset is not None:
            return
        if self.demo:
            self._build_demo()  # returns at once when prepare_data already built it
        records = discover(self.root, self.layout, self.splits)
        self.dataset = SliceDataset(records, self.resolution, self.img_channels, self.progress)

    def _require_dataset(self) -> SliceDataset:
        if self.dataset is None:
            self.setup()
        assert self.dataset is not None
        return self.dataset

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Endless loader; resumes at `start_index`; never draws from the global torch RNG."""
        dataset = self._require_dataset()
        rank, world_size = self._rank_and_world()
        sampler = InfiniteSampler(
            len(dataset), rank=rank, world_size=world_size, seed=self.seed, start=self.start_index
        )
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def real_images(self, n: int) -> torch.Tensor:
        """n images evenly spaced over the dataset, float [n, C, R, R] in [-1, 1], for the reals grid.

        Evenly spaced rather than the first n, so the grid spans subjects (the first 32 OASIS
        slices are all one subject). A dataset smaller than n is repeated in order.
        """
        dataset = self._require_dataset()
        if len(dataset) >= n:
            index = torch.linspace(0, len(dataset) - 1, n).round().long()  # [n]
        else:
            index = torch.arange(n) % len(dataset)  # [n]
        images = torch.from_numpy(dataset.images[index.numpy()])  # [n, C, R, R] uint8
        return images.to(torch.float32) / 127.5 - 1.0

    @property
    def num_classes(self) -> int:
        """Number of label classes of the training set (1 when unlabelled)."""
        return self._require_dataset().num_classes
