"""The LightningDataModule: discover slices, split by subject, cache them, feed an endless loader.

Plain constructor arguments (no Hydra here): the entry point builds this class from the config.

- Discovery lists every split of the layout; the `splits` argument picks the training ones and
  the rest stay held out for evaluation. A layout with no splits of its own (everything is
  'train', as in `folder`) gets a seeded 'validate' split by subject (`holdout` of the subjects,
  per class). Training on every split of a layout that has them is the user's choice: nothing
  is held out then. A subject found in two splits stops the run.
- `manifest.csv` (path, subject, slice, label, class, split of every slice) goes to
  `manifest_path` when given.
- The training slices are decoded once into a memory-mapped uint8 cache (see dataset.py);
  batches are uint8 [B, C, R, R] and the training module turns them into floats on the device.
- The loader draws from `InfiniteSampler`, so training is measured in images and resumes exactly:
  the entry point sets `start_index` (indices this rank already consumed) before the loader is
  built. Lightning would wrap the sampler in a DistributedSampler unless the Trainer is created
  with `use_distributed_sampler=False`; the sampler shards by rank itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from braingan.data.dataset import SliceDataset
from braingan.data.demo import DEMO_SEED, build_demo_dataset
from braingan.data.fit import Geometry
from braingan.data.layouts import DatasetError, LayoutOptions, SliceRecord, discover
from braingan.data.manifest import write_manifest
from braingan.data.sampler import InfiniteSampler
from braingan.data.splits import check_no_leak, has_holdout, make_holdout


class SliceDataModule(pl.LightningDataModule):
    """Slices of one dataset as batches of (img uint8 [B, C, R, R], label int64 [B])."""

    def __init__(
        self,
        root: str | None,  # dataset folder; with demo=True, the demo cache folder
        layout: str = "oasis",  # "oasis", "adni" or "folder" (see layouts.py)
        splits: Sequence[str] = ("train",),  # splits that make up the training set
        resolution: int = 256,  # model side R; images are fitted to R x R
        img_channels: int = 1,  # 1 = grayscale, 3 = RGB
        batch_size: int = 32,  # per process
        num_workers: int = 2,  # DataLoader worker processes; 0 = main process
        seed: int = 0,  # shuffling seed of the sample stream
        demo: bool = False,  # build the embedded MNI152 demo set into root first
        demo_subjects: int = 80,  # pseudo-subjects in the demo set
        progress: bool = True,  # tqdm bars while building / decoding
        classes: Sequence[str] | None = None,  # class names to train on, in label order; None = all
        labels: bool = False,  # folder layout: sub-folder names are classes
        subject_regex: str | None = None,  # folder layout: subject id from the relative path
        fit: str = "pad",  # non-square images: pad | crop | resize (fit.py)
        cache_dir: str | None = None,  # folder of the decoded-slice cache; None = in memory
        skip_bad: bool = False,  # leave unreadable images out instead of stopping
        holdout: float = 0.1,  # fraction of subjects held out when the layout has none
        split_seed: int = 0,  # seed of that held-out split
        balance: bool = False,  # draw every class equally often
        manifest_path: str | Path | None = None,  # where to write manifest.csv; None = nowhere
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
        self.classes = list(classes) if classes is not None else None
        self.options = LayoutOptions(labels=labels, subject_regex=subject_regex)
        self.fit = fit
        self.cache_dir = cache_dir
        self.skip_bad = skip_bad
        self.holdout = holdout
        self.split_seed = split_seed
        self.balance = balance
        self.manifest_path = Path(manifest_path) if manifest_path is not None else None
        self.start_index: int = 0  # indices already consumed by this rank; set on resume
        self.records: list[SliceRecord] = []  # every slice of every split, after the split check
        self.dataset: SliceDataset | None = None

    def _build_demo(self) -> None:
        if self.root is None or str(self.root) == "":
            raise DatasetError(
                "dataset.root is not set; with dataset=demo it is the folder that caches "
                "the demo slices (it is created if missing)"
            )
        build_demo_dataset(Path(self.root), num_subjects=self.demo_subjects, seed=DEMO_SEED, progress=self.progress)

    def prepare_data(self) -> None:
        """Build the demo set once per node (Lightning calls this on local rank 0 only)."""
        if self.demo:
            self._build_demo()

    def discover_records(self) -> list[SliceRecord]:
        """All slices with their splits: discovery, the held-out split if needed, the leak check."""
        records = discover(self.root, self.layout, None, self.classes, self.options)
        unknown = [s for s in self.splits if not any(r.split == s for r in records)]
        if unknown:
            found = sorted({r.split for r in records})
            raise DatasetError(
                f"dataset.splits={list(self.splits)}: no images in split(s) {unknown} of "
                f"dataset.root={self.root} (splits found: {found})"
            )
        if not has_holdout(records, ["train"]):  # the layout has no splits of its own (folder)
            records = make_holdout(records, self.holdout, self.split_seed, "validate")
        check_no_leak(records)
        return records

    def setup(self, stage: str | None = None) -> None:
        """Discover, split and decode the slices; later calls are no-ops."""
        if self.dataset is not None:
            return
        if self.demo:
            self._build_demo()  # returns at once when prepare_data already built it
        records = self.discover_records()
        train_records = [r for r in records if r.split in self.splits]
        if not train_records:
            raise DatasetError(f"dataset.holdout={self.holdout} left no training subjects in dataset.root={self.root}")
        dataset = SliceDataset(
            train_records,
            self.resolution,
            self.img_channels,
            fit=self.fit,
            cache_dir=self.cache_dir,
            skip_bad=self.skip_bad,
            progress=self.progress,
        )
        skipped = {record.path for record, _ in dataset.skipped}
        self.records = [r for r in records if r.path not in skipped]
        self.dataset = dataset
        missing = [n for k, n in enumerate(self.class_names) if not bool((dataset.labels == k).any())]
        if missing:
            raise DatasetError(
                f"class(es) {missing} have no training images in dataset.splits={list(self.splits)}; "
                "choose the classes with dataset.classes=[...]"
            )
        if self.manifest_path is not None and self._rank_and_world()[0] == 0:
            write_manifest(self.records, self.manifest_path)

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
            len(dataset),
            rank=rank,
            world_size=world_size,
            seed=self.seed,
            start=self.start_index,
            labels=dataset.labels.tolist() if self.balance else None,
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

    def real_images(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n training images, float [n, C, R, R] in [-1, 1], for the reals grid.

        Evenly spaced over the dataset rather than the first n, so the grid spans subjects (the
        first 32 OASIS slices are all one subject). With `labels` ([n] class indices, e.g. the
        fakes grid's classes), image i is drawn from class labels[i]. Too few images repeat.
        """
        dataset = self._require_dataset()
        wanted = torch.zeros(n, dtype=torch.int64) if labels is None else labels.cpu().long()
        index = torch.zeros(n, dtype=torch.int64)
        for k in wanted.unique().tolist():
            slots = torch.nonzero(wanted == k).flatten()  # output positions of class k
            members = torch.arange(len(dataset)) if labels is None else torch.nonzero(dataset.labels == k).flatten()
            if len(members) == 0:
                continue
            if len(members) >= len(slots):
                pick = torch.linspace(0, len(members) - 1, len(slots)).round().long()
            else:
                pick = torch.arange(len(slots)) % len(members)
            index[slots] = members[pick]
        images = torch.from_numpy(dataset.images[index.numpy()])  # [n, C, R, R] uint8
        return images.to(torch.float32) / 127.5 - 1.0

    @property
    def num_classes(self) -> int:
        """Number of label classes (1 when unlabelled)."""
        return max(len(self.class_names), 1)

    @property
    def class_names(self) -> list[str]:
        """Class names in label order ([] when unlabelled)."""
        names: dict[int, str] = {}
        if not self.records:
            self._require_dataset()
        for r in self.records:
            names.setdefault(r.label, r.class_name)
        if names.keys() == {0} and names[0] == "":
            return []
        return [names[k] for k in sorted(names)]

    @property
    def geometry(self) -> Geometry:
        """Native image size and fit policy of the training images (see fit.py)."""
        return self._require_dataset().geometry

    def data_info(self) -> dict:
        """What generation needs to know about the data, stored in checkpoints."""
        return {
            "class_names": self.class_names,
            "geometry": self.geometry.to_dict(),
            "layout": self.layout,
            "root": str(self.root),
            "splits": list(self.splits),
        }
