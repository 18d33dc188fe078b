"""Where evaluation images come from: a run's real slices (by split) and its generator.

What a checkpoint says about its run (resolution, fit policy, splits, class names) is
`checkpoint.read_info`; this module takes those facts as arguments and reads no checkpoint.

Real slices are the ones the run's `manifest.csv` lists (the exact subject split the model was
trained with), decoded like training decodes them (same resolution and fit policy, through the
slice cache). Generated slices come from the checkpoint's EMA generator, in seeded batches,
as uint8 by the rounding convention of the FID tools.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import SliceDataset
from ..data.layouts import SliceRecord
from ..data.manifest import read_manifest
from ..rundir import RunDir
from ..utils.errors import MissingFileError, UsageError
from ..utils.images import to_uint8

REAL_SETS = ("train", "validate", "test", "heldout", "all")


def real_records(
    run_dir: RunDir | str | os.PathLike,  # a run folder holding manifest.csv
    which: str,  # train | validate | test | heldout | all
    train_splits: Sequence[str],  # the splits the run trained on
    root: str | os.PathLike | None = None,  # the folder relative paths are below (an export's); None = as written
) -> list[SliceRecord]:
    """The manifest's slices of one real set; 'train' = the training splits, 'heldout' = the rest."""
    manifest = (run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))).manifest
    if not manifest.is_file():
        raise MissingFileError(f"{manifest} is missing: evaluation needs the run's manifest of slices")
    if which not in REAL_SETS:
        raise UsageError(f"eval.real={which} must be one of {', '.join(REAL_SETS)}")
    records = read_manifest(manifest, root)
    if which == "all":
        return records
    if which == "train":
        return [r for r in records if r.split in train_splits]
    if which == "heldout":
        return [r for r in records if r.split not in train_splits]
    return [r for r in records if r.split == which]


def export_data_root(
    export,  # export.ExportInfo of the folder being evaluated
    data_root: str | os.PathLike | None,  # the folder the data set is in now; None = as recorded
    demo_root: str | os.PathLike | None,  # this machine's demo data folder (paths.demo): a demo export's data
    progress: bool = True,
) -> Path | None:
    """Where an export's real slices are now: data_root=, else (the demo data set) demo_root, built
    there when missing, else the folder recorded at export. One line when its manifest's files are not there."""
    where = f"ckpt={export.folder}"
    if not export.has_manifest:
        source = f": evaluate {export.checkpoint} instead" if export.checkpoint else ""
        raise UsageError(
            f"{where} holds no manifest.csv (exported with manifest=false), so no real slices to compare with{source}"
        )
    data = export.data
    root: Path | None
    if data_root not in (None, ""):
        root = Path(str(data_root)).expanduser()
    elif data.get("dataset") == "demo" and data.get("demo_subjects") and demo_root not in (None, ""):
        from ..data.demo import DEMO_SEED, build_demo_dataset

        subjects = int(data["demo_subjects"])
        root = build_demo_dataset(Path(str(demo_root)), num_subjects=subjects, seed=DEMO_SEED, progress=progress)
    else:
        root = Path(data["root"]) if data.get("root") else None
    missing = next((r.path for r in read_manifest(export.run.manifest, root) if not Path(r.path).is_file()), None)
    if missing is not None:
        raise MissingFileError(
            f"{missing} (in {where}'s manifest.csv) is not here: set data_root= to the folder that now holds "
            f"the {data.get('dataset') or 'training'} data set"
        )
    return root


def slice_cache(cache: Path | None) -> str | None:
    """The decoded-slice cache folder below a cache root (<cache>/slices); None without a cache."""
    return str(cache / "slices") if cache else None


def real_images(
    records: Sequence[SliceRecord],  # the slices
    resolution: int,  # model side R
    fit: str,  # fit policy the model was trained with
    cache_dir: str | None,  # decoded-slice cache folder; None = in memory
    progress: bool = True,
    img_channels: int = 1,  # the model's image channels
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [N, C, R, R], labels [N]) decoded exactly like the training data."""
    images, labels, _ = decoded_slices(records, resolution, fit, cache_dir, progress, img_channels)
    return images, labels


def decoded_slices(
    records: Sequence[SliceRecord],
    resolution: int,
    fit: str,
    cache_dir: str | None,
    progress: bool = True,
    img_channels: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, list[SliceRecord]]:
    """`real_images` plus the records of the images (unreadable slices are left out of all three)."""
    data = SliceDataset(
        records, resolution, img_channels, fit=fit, cache_dir=cache_dir, skip_bad=True, progress=progress
    )
    return torch.from_numpy(np.array(data.images)), data.labels, list(data.records)  # a copy: the cache is read-only


def generated_batches(
    G: torch.nn.Module,  # the generator (eval mode)
    labels: torch.Tensor,  # [N] class of each image (zeros when unconditional)
    batch_size: int,  # images per generator call
    seed: int,  # seeds z and the noise inputs
    truncation_psi: float = 1.0,  # 1 = none
    device: torch.device | str = "cpu",
) -> Iterator[torch.Tensor]:  # uint8 [B, C, R, R] per batch
    """N images from G at seeded latents, as uint8 by rounding, batch by batch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the noise inputs draw from the global generator
    for start in range(0, len(labels), batch_size):
        lab = labels[start : start + batch_size]
        z = torch.randn(len(lab), cast(int, G.z_dim), generator=g).to(device)
        c = F.one_hot(lab.long(), cast(int, G.c_dim)).float().to(device) if cast(int, G.c_dim) > 0 else None
        with torch.no_grad():
            yield to_uint8(G(z, c, truncation_psi=truncation_psi, noise_mode="random")).cpu()


def sample_labels(real_labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """n class labels drawn in the real set's class proportions (exact counts, shuffled)."""
    if num_classes <= 1:
        return torch.zeros(n, dtype=torch.int64)
    freq = torch.bincount(real_labels, minlength=num_classes).double()
    counts = torch.floor(freq / freq.sum() * n).long()
    counts[torch.argmax(freq)] += n - int(counts.sum())  # the rounding remainder goes to the largest class
    labels = torch.repeat_interleave(torch.arange(num_classes), counts)
    return labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))]


def real_set(
    run_dir: RunDir | str | os.PathLike,  # the run folder (manifest.csv)
    which: str,  # train | validate | test | heldout | all
    train_splits: Sequence[str],  # the splits the run trained on
    resolution: int,  # model side R
    fit: str,  # fit policy of the run
    extractor,  # InceptionFeatures (has .sha256)
    cache: Path | None,  # cache root: <cache>/slices and <cache>/stats; None = no caches
    batch_size: int = 64,
    progress: bool = True,
    img_channels: int = 1,  # the model's image channels
    root: str | os.PathLike | None = None,  # the folder relative manifest paths are below; None = as written
) -> dict | None:
    """A real set's records, uint8 images [N, C, R, R], labels [N] and features [N, D].

    Features come from the real-statistics cache when the same files were seen with the same
    resolution, fit policy and extractor ('cached': True). None when the set has < 2 slices.
    """
    from .features import extract_features
    from .stats_cache import load_or_compute

    records = real_records(run_dir, which, train_splits, root)
    if len(records) < 2:
        return None
    images, labels = real_images(records, resolution, fit, slice_cache(cache), progress, img_channels)

    def compute() -> np.ndarray:
        return extract_features(extractor, images, batch_size, progress=progress, desc=f"real {which}")

    if cache is None:
        features, hit = compute(), False
    else:
        stats, hit = load_or_compute(
            cache / "stats", [r.path for r in records], resolution, fit, extractor.sha256, compute, img_channels
        )
        features = stats.features
    return {"records": records, "images": images, "labels": labels, "features": features, "cached": hit}


def keeping(
    batches: Iterator[torch.Tensor],  # image batches [B, C, R, R] of one stream, in order
    rows: torch.Tensor,  # sorted indices (in stream order) of the images to keep
    kept: list[torch.Tensor],  # receives copies of those images, batch by batch, in order
) -> Iterator[torch.Tensor]:
    """The batches unchanged, keeping the images at `rows` aside (torch.cat(kept) = stream[rows])."""
    start = 0
    for batch in batches:
        end = start + len(batch)
        lo, hi = (int(i) for i in torch.searchsorted(rows, torch.tensor([start, end])))
        if hi > lo:
            kept.append(batch[rows[lo:hi] - start].clone())
        start = end
        yield batch
