"""Callbacks on the kimg clock: checkpoints, sample grids, TensorBoard scalars, progress bar.

Each fires when a training step crosses a multiple of its cadence (in kimg), computed from
the module's image counter, so the cadences survive a resume unchanged.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..rundir import LAST, snapshot_name
from ..utils.images import save_grid
from ..utils.io import atomic_path, kimg_tag, null_path


def crossed_tick(prev_nimg: int, cur_nimg: int, every_kimg: float | None) -> float | None:
    """The latest multiple of `every_kimg` in (prev_nimg, cur_nimg], in kimg; None if there is none."""
    if not every_kimg or every_kimg <= 0:
        return None
    step = every_kimg * 1000
    k = math.floor(cur_nimg / step + 1e-9)
    if k * step > prev_nimg + 1e-6 and k >= 1:
        return round(k * every_kimg, 6)
    return None


def _is_last_step(trainer: pl.Trainer) -> bool:
    return bool(trainer.should_stop)


class KimgCheckpoint(pl.Callback):
    """Writes `last.ckpt` every `last_kimg` and at the end, and keeps `kimg_<kimg>.ckpt` every `snapshot_kimg`
    (names: rundir.LAST, rundir.snapshot_name)."""

    def __init__(self, dirpath: str | Path, snapshot_kimg: float | None, last_kimg: float | None):
        self.dirpath = Path(dirpath)
        self.snapshot_kimg, self.last_kimg = snapshot_kimg, last_kimg
        self._saved_nimg: int | None = None

    def save(self, trainer: pl.Trainer, module, name: str) -> Path:
        path = self.dirpath / name
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        # Every rank takes part (collective under DDP); the strategy writes on rank 0 only.
        with atomic_path(path) if trainer.is_global_zero else null_path(path) as tmp:
            trainer.save_checkpoint(tmp, weights_only=False)
        module.last_good_ckpt = str(path)
        self._saved_nimg = module.cur_nimg
        return path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        prev, cur = module.prev_nimg, module.cur_nimg
        snap = crossed_tick(prev, cur, self.snapshot_kimg)
        if snap is not None or crossed_tick(prev, cur, self.last_kimg) is not None or _is_last_step(trainer):
            last = self.save(trainer, module, LAST)
            if snap is not None and trainer.is_global_zero:
                with atomic_path(self.dirpath / snapshot_name(kimg_tag(snap, self.snapshot_kimg))) as tmp:
                    shutil.copyfile(last, tmp)

    def on_train_end(self, trainer, module) -> None:
        # Training also ends on a time limit: keep the final state.
        if self._saved_nimg != module.cur_nimg and module.cur_nimg > 0:
            self.save(trainer, module, LAST)

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        # Ctrl-C on one process: keep the state (consistent between steps). Never after a
        # non-finite stop (the weights may be broken) or under DDP (a save is collective).
        if isinstance(exception, KeyboardInterrupt) and trainer.world_size == 1:
            self.on_train_end(trainer, module)


class DirectCheckpointIO(TorchCheckpointIO):
    """torch.save straight into the file it is given (KimgCheckpoint gives a temporary beside the final one).

    Lightning's default first serializes the whole checkpoint into memory, then writes it through
    a temporary file in the system's temporary folder and copies that next to its target: twice
    the memory and the disk traffic, and a full /tmp breaks saving where the run folder has room.
    A disk-full write reaches the caller as the OSError it is (torch.save reports it as a bare
    RuntimeError), with the file's name.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("DirectCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "wb") as f:
                writer = _RecordingWriter(f)
                try:
                    torch.save(checkpoint, cast(IO[bytes], writer))
                except RuntimeError:
                    if writer.error is not None:
                        raise writer.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None


class _RecordingWriter:
    """A file's write() for torch.save that keeps the OSError it raised (torch.save hides it)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.f.flush()


def log_hyperparameters(logger, params: dict, metric_tags: Sequence[str]) -> None:
    """Hyperparameters into tb/hparams.yaml and into the event file, where TensorBoard's HPARAMS tab reads them.

    The tab lists the run's flattened settings beside the last values of `metric_tags` (scalars
    the run logs). Lightning writes only the YAML file unless it is also given metric values.
    """
    logger.log_hyperparams(params)
    write_hparams(logger.experiment, params, metric_tags)


def write_hparams(writer, params: dict, metric_tags: Sequence[str]) -> None:
    """The HPARAMS tab's summaries (its columns: `metric_tags`) through a torch SummaryWriter.

    Written again into the same run folder (make eval adds its metrics), the newest summaries are
    the ones TensorBoard reads for the run.
    """
    from torch.utils.tensorboard.summary import hparams

    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
    file_writer = writer._get_file_writer()
    for summary in hparams(values, {tag: 0.0 for tag in metric_tags}):
        file_writer.add_summary(summary)
    file_writer.flush()


class SampleGrids(pl.Callback):
    """`reals.png` once, then `fakes_<kimg>.png` from G_ema at the fixed latents and fixed noise.

    Conditional models get one row per class in both grids; tiles keep the data's native aspect
    (the fit policy's padding is cut off) at the model's resolution.
    """

    def __init__(self, dirpath: str | Path, image_kimg: float | None, truncation_psi: float = 1.0):
        self.dirpath = Path(dirpath)
        self.image_kimg, self.truncation_psi = image_kimg, truncation_psi

    @torch.no_grad()
    def render(self, module) -> torch.Tensor:  # [num_samples, C, R, R]
        c = module._one_hot(module.sample_c)
        images = []
        for i in range(0, module.sample_z.shape[0], 8):
            ci = c[i : i + 8] if c is not None else None
            images.append(
                module.G_ema(
                    module.sample_z[i : i + 8], ci, truncation_psi=self.truncation_psi, noise_mode="const"
                ).float()
            )
        return torch.cat(images).cpu()

    def _write(self, trainer, module, name: str, images: torch.Tensor, tag: str) -> None:
        # Tiles in the data's native aspect at model scale (ADNI at 256: 256x240, padding cut off).
        geometry = module.geometry
        if geometry is not None:
            images = geometry.to_display(images)
        grid = save_grid(images, self.dirpath / name, rows=module.sample_rows)
        if trainer.logger is not None and hasattr(trainer.logger.experiment, "add_image"):
            trainer.logger.experiment.add_image(tag, grid, global_step=module.cur_nimg, dataformats="HWC")

    def on_train_start(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        if not (self.dirpath / "reals.png").exists() and dm is not None and hasattr(dm, "real_images"):
            self._write(
                trainer,
                module,
                "reals.png",
                dm.real_images(module.sample_z.shape[0], module.sample_c if module.sample_rows else None),
                "samples/reals",
            )
        if module.cur_nimg == 0:
            self._write(
                trainer, module, f"fakes_{kimg_tag(0, self.image_kimg)}.png", self.render(module), "samples/fakes"
            )

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        tick = crossed_tick(module.prev_nimg, module.cur_nimg, self.image_kimg)
        if tick is None and _is_last_step(trainer):
            tick = module.cur_kimg
        if tick is not None:
            self._write(
                trainer, module, f"fakes_{kimg_tag(tick, self.image_kimg)}.png", self.render(module), "samples/fakes"
            )


class ScalarLogger(pl.Callback):
    """Averages of the module's statistics written to the logger every `log_kimg` (step = images shown).

    Reading them is the training loop's one look at the device between checkpoints, so this is
    also where a run of non-finite steps stops the run (StyleGAN2Module.check_nonfinite).
    """

    def __init__(self, log_kimg: float | None):
        self.log_kimg = log_kimg

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if crossed_tick(module.prev_nimg, module.cur_nimg, self.log_kimg) is None and not _is_last_step(trainer):
            # Without a logging cadence, the non-finite stop still looks every max_nonfinite steps.
            if not self.log_kimg and module.batch_idx % module.train_cfg.max_nonfinite == 0:
                module.check_nonfinite()
            return
        stats = module.pop_stats()
        if trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_metrics(stats, step=module.cur_nimg)


class KimgProgressBar(TQDMProgressBar):
    """Progress bar whose total is the number of steps to reach the training length.

    It shows kimg (a host-side counter) and the losses of the last logging tick: reading a loss
    every step would wait for the GPU every step.
    """

    def __init__(self, total_kimg: float, batch_size: int, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        self._total_steps = math.ceil(total_kimg * 1000 / batch_size)

    @property
    def total_train_batches(self) -> int:
        return self._total_steps

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        module = trainer.lightning_module
        self.train_progress_bar.reset(total=self._total_steps)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.n = module.batch_idx
        self.train_progress_bar.set_description("Training (kimg clock)")

    def get_metrics(self, trainer, pl_module) -> dict:
        items = dict(super().get_metrics(trainer, pl_module))
        items["kimg"] = f"{pl_module.cur_kimg:.3f}"
        for tag, name in (("Loss/G", "loss_G"), ("Loss/D", "loss_D")):
            if tag in pl_module.last_stats:
                items[name] = f"{pl_module.last_stats[tag]:.3g}"
        return items
