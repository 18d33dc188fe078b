"""FID during training: every `every_kimg`, a smaller-N FID of G_ema, logged and kept at its best.

The training slices' Inception features are computed once at the start (or read from the real
statistics cache shared with `make eval`); each tick generates `num_gen` images at fixed seeds,
extracts their features and logs `Metrics/fid<N>k_train` to TensorBoard at step = images shown.
When the FID is the best so far, `checkpoints/best_fid.ckpt` is written (atomically). A small
N gives a biased FID that is only comparable with itself: use it to watch progress and pick a
checkpoint, and `make eval` (N = 50,000) for the number to report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from ..metrics.features import extract_features
from ..metrics.fid import fid_from_features
from ..metrics.inception import InceptionFeatures
from ..metrics.sources import generated_batches, sample_labels
from ..metrics.stats_cache import load_or_compute
from ..rundir import BEST_FID
from ..utils.io import atomic_path, null_path
from .callbacks import crossed_tick


def fid_tag(num_gen: int) -> str:
    """The TensorBoard tag of the FID during training with `num_gen` generated images: Metrics/fid<N>k_train."""
    return f"Metrics/fid{num_gen / 1000:g}k_train"


class FIDMonitor(pl.Callback):
    def __init__(
        self,
        dirpath: str | Path,  # the run's checkpoints/ folder (best_fid.ckpt goes here)
        every_kimg: float,  # cadence in kimg
        num_gen: int = 5000,  # generated images per evaluation
        cache_dir: str | Path | None = None,  # real-statistics cache; None = compute in memory
        batch_size: int = 64,  # images per generator / Inception call
        seed: int = 0,  # fixed latents: the curve moves only with the model
        extractor: str | None = None,  # TorchScript extractor; None = the bundled TF Inception-v3
    ):
        self.dirpath = Path(dirpath)
        self.every_kimg, self.num_gen, self.batch_size, self.seed = every_kimg, num_gen, batch_size, seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.extractor = extractor
        self.best: float = float("inf")
        self.tag = fid_tag(num_gen)
        self._net: InceptionFeatures | None = None
        self._real: np.ndarray | None = None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state.get("best", float("inf")))

    def _prepare(self, trainer, module) -> None:
        dm = trainer.datamodule
        dataset = dm._require_dataset()
        self._net = InceptionFeatures(self.extractor, batch_size=self.batch_size).to(module.device)
        self._labels = dataset.labels

        def compute() -> np.ndarray:
            images = torch.from_numpy(np.asarray(dataset.images))
            assert self._net is not None  # set just above
            return extract_features(self._net, images, self.batch_size, progress=False, desc="real train")

        if self.cache_dir is None:
            self._real = compute()
        else:
            geometry = dm.geometry
            stats, _ = load_or_compute(
                self.cache_dir,
                [r.path for r in dataset.records],
                geometry.resolution,
                geometry.fit,
                self._net.sha256,
                compute,
                int(dataset.images.shape[1]),
            )
            self._real = stats.features

    @torch.no_grad()
    def evaluate(self, trainer, module) -> float:
        if self._net is None:
            self._prepare(trainer, module)
        G = module.G_ema
        labels = sample_labels(self._labels, self.num_gen, max(G.c_dim, 1), self.seed)
        state = torch.get_rng_state()  # generation must not disturb training's random stream
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            batches = generated_batches(G, labels, self.batch_size, self.seed, 1.0, module.device)
            assert self._net is not None  # set by _prepare
            fake = extract_features(self._net, batches, progress=False, total=self.num_gen)
        finally:
            torch.set_rng_state(state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
        return fid_from_features(self._real, fake)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if crossed_tick(module.prev_nimg, module.cur_nimg, self.every_kimg) is None:
            return
        # Rank 0 measures; the others wait for its number, then all take part in the save
        # (collective), which rank 0 alone writes.
        fid = self.evaluate(trainer, module) if trainer.is_global_zero else float("nan")
        if trainer.world_size > 1:
            fid = float(trainer.strategy.broadcast(fid, src=0))
        if trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_metrics({self.tag: fid}, step=module.cur_nimg)
        if fid < self.best:
            self.best = fid
            path = self.dirpath / BEST_FID
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) if trainer.is_global_zero else null_path(path) as tmp:
                trainer.save_checkpoint(tmp)
