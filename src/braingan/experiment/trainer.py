"""The hardware side of a run: processes, DDP strategy, CUDA backends, the Trainer and its callbacks."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment

from ..rundir import RunDir
from ..training.callbacks import (
    DirectCheckpointIO,
    KimgCheckpoint,
    KimgProgressBar,
    SampleGrids,
    ScalarLogger,
)
from ..training.distributed import GANDDPStrategy
from ..training.fid_monitor import FIDMonitor
from ..training.preemption import Preemption
from ..utils.errors import UsageError
from .settings import optional_path


def requested_processes(trainer_cfg) -> int:
    """Processes the trainer settings ask for: devices per node x nodes (devices may be a list or 'auto')."""
    devices = trainer_cfg.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        per_node = devices
    elif isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        per_node = len(devices)
    elif str(trainer_cfg.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        per_node = torch.cuda.device_count()  # 'auto' or -1: every visible GPU
    else:
        per_node = 1
    return per_node * int(trainer_cfg.num_nodes)


def build_strategy(trainer_cfg):
    """Lightning's DDP for several processes (see training/distributed.py), else what the config says."""
    name, processes = str(trainer_cfg.strategy), requested_processes(trainer_cfg)
    if processes == 1 and name in ("ddp", "ddp_gan"):
        return "auto"  # one process: nothing to distribute (and no DistributedDataParallel wrapper)
    if processes > 1 and name in ("auto", "ddp", "ddp_gan"):
        backend = "nccl" if str(trainer_cfg.accelerator) != "cpu" and torch.cuda.is_available() else "gloo"
        return GANDDPStrategy(process_group_backend=backend)
    if name not in ("auto", "single_device") and processes > 1:
        raise UsageError(f"trainer.strategy={name}: use auto or ddp (StyleGAN2 needs its own gradient averaging)")
    return name


def set_backends(trainer_cfg) -> None:
    """cudnn autotuner and TF32 as the trainer settings say (CUDA only)."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(trainer_cfg.benchmark)
        torch.backends.cuda.matmul.allow_tf32 = bool(trainer_cfg.allow_tf32)
        torch.backends.cudnn.allow_tf32 = bool(trainer_cfg.allow_tf32)


def trainer_settings(trainer_cfg) -> dict:
    """The pl.Trainer arguments every StyleGAN2 run shares (training, make bench, make guard)."""
    t = trainer_cfg
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=t.precision,
        strategy=build_strategy(t),
        # On SLURM the job's tasks are the ranks; requeueing is ours (Preemption), not Lightning's.
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
        max_epochs=-1,
        max_steps=-1,
        use_distributed_sampler=False,  # the datamodule's InfiniteSampler shards by rank itself
        num_sanity_val_steps=0,
        deterministic=t.deterministic,
        benchmark=t.benchmark if torch.cuda.is_available() else None,
    )


def build_trainer(cfg: DictConfig, run: RunDir) -> tuple[pl.Trainer, Preemption]:
    """The Trainer of a training run with its callbacks and logger (writes nothing yet)."""
    t, schedule = cfg.trainer, cfg.schedule
    logger = TensorBoardLogger(save_dir=str(run.tb.parent), name=run.tb.name, version="", default_hp_metric=False)
    callbacks: list[pl.Callback] = []
    if schedule.get("fid_kimg"):  # before the checkpoint callback, so last.ckpt holds the best FID
        callbacks.append(
            FIDMonitor(
                run.checkpoints,
                schedule.fid_kimg,
                schedule.fid_num_gen,
                cache_dir=optional_path(cfg.paths.stats),
                seed=cfg.seed,
            )
        )
    checkpointing = KimgCheckpoint(run.checkpoints, schedule.snapshot_kimg, schedule.last_kimg)
    preemption = Preemption(
        checkpointing, signals=list(cfg.get("requeue_signals") or []), stop_signals=list(cfg.get("stop_signals") or [])
    )
    settings = trainer_settings(t)
    settings["plugins"] = [*(settings["plugins"] or []), DirectCheckpointIO()]
    trainer = pl.Trainer(
        **settings,
        max_time=t.get("max_time"),
        logger=logger,
        enable_checkpointing=False,
        log_every_n_steps=1,
        default_root_dir=str(run.path),
        enable_model_summary=True,
        callbacks=callbacks
        + [
            checkpointing,
            preemption,
            SampleGrids(run.samples, schedule.image_kimg),
            ScalarLogger(schedule.log_kimg),
            KimgProgressBar(cfg.kimg, cfg.batch_size),
        ],
    )
    return trainer, preemption
