"""Entry point: `python -m braingan.train [overrides]` (what `make train` runs).

Hydra composes conf/train.yaml with the dataset/, model/, resolution/ and trainer/ groups;
`main` hands the composed config to the plain function `train`, which knows no Hydra.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

from .conf_utils import CONF_DIR, normalize_overrides, register_resolvers, replay_overrides, resolve_resume
from .data.datamodule import SliceDataModule
from .nn.config import NetworkConfig
from .training.callbacks import KimgCheckpoint, KimgProgressBar, SampleGrids, ScalarLogger
from .training.config import TrainConfig
from .training.fid_monitor import FIDMonitor
from .training.module import StyleGAN2Module

register_resolvers()


def _optional_path(value) -> str | None:
    return None if value is None or str(value) == "" else str(Path(os.path.expanduser(str(value))))


def build_datamodule(cfg: DictConfig, world_size: int = 1, run_dir: Path | None = None) -> SliceDataModule:
    ds = cfg.dataset
    if cfg.batch_size % world_size != 0:
        raise ValueError(f"batch_size={cfg.batch_size} (global) is not divisible by the {world_size} processes")
    classes = ds.get("classes")
    if isinstance(classes, str):  # dataset.classes=AD means [AD]
        classes = [classes]
    return SliceDataModule(
        root=_optional_path(ds.root),
        layout=ds.layout,
        splits=list(ds.splits),
        resolution=cfg.resolution,
        img_channels=cfg.img_channels,
        batch_size=cfg.batch_size // world_size,
        num_workers=cfg.trainer.num_workers,
        seed=cfg.seed,
        demo=ds.name == "demo",
        demo_subjects=ds.get("demo_subjects", 80),
        classes=[str(c) for c in classes] if classes is not None else None,
        labels=bool(ds.get("labels", False)),
        subject_regex=ds.get("subject_regex"),
        fit=ds.get("fit", "pad"),
        cache_dir=_optional_path(ds.get("cache_dir")),
        skip_bad=bool(ds.get("skip_bad", False)),
        holdout=float(ds.get("holdout", 0.1)),
        split_seed=int(ds.get("split_seed", 0)),
        balance=bool(ds.get("balance", False)),
        manifest_path=run_dir / "manifest.csv" if run_dir is not None else None,
    )


def conditioning_classes(conditional, num_classes: int) -> int:
    """c_dim for model.conditional = auto | true | false and the classes found in the data."""
    mode = str(conditional).lower()
    if mode not in ("auto", "true", "false"):
        raise ValueError(f"model.conditional={conditional} must be auto, true or false")
    if mode == "true" and num_classes < 2:
        raise ValueError(
            f"model.conditional=true but the training data has {num_classes} class; use labelled data "
            "(dataset=adni, or dataset=folder dataset.labels=true) with two or more classes"
        )
    if mode == "false" or num_classes < 2:
        return 0
    return num_classes


def build_configs(cfg: DictConfig, c_dim: int = 0) -> tuple[NetworkConfig, TrainConfig]:
    m, aug = cfg.model, cfg.augment
    net = NetworkConfig(
        img_resolution=cfg.resolution,
        img_channels=cfg.img_channels,
        z_dim=m.z_dim,
        w_dim=m.w_dim,
        c_dim=c_dim,
        mapping_layers=m.mapping_layers,
        channel_base=m.channel_base,
        channel_max=m.channel_max,
        conv_clamp=m.conv_clamp,
        mbstd_group_size=m.mbstd_group_size,
        fused_modconv=m.fused_modconv,
    )
    train = TrainConfig(
        batch_size=cfg.batch_size,
        total_kimg=cfg.kimg,
        lr_g=m.lr_g,
        lr_d=m.lr_d,
        r1_gamma=m.r1_gamma,
        r1_interval=m.r1_interval,
        pl_weight=m.pl_weight,
        pl_interval=m.pl_interval,
        pl_decay=m.pl_decay,
        pl_batch_shrink=m.pl_batch_shrink,
        style_mixing=m.style_mixing,
        ema_kimg=m.ema_kimg,
        ema_rampup=m.ema_rampup,
        augment=aug.mode,
        augment_p=aug.p,
        ada_target=aug.target,
        ada_interval=aug.interval,
        ada_kimg=aug.kimg,
        augment_kwargs=OmegaConf.to_container(aug.pipe, resolve=True),
        max_nonfinite=cfg.max_nonfinite,
        num_samples=cfg.schedule.num_samples,
    )
    return net, train


def check_resume_matches(state: dict, net: NetworkConfig, data_info: dict, ckpt_path) -> None:
    """Refuse to resume onto different classes or another network shape, in one line."""
    saved = state.get("hyper_parameters", {})
    saved_net, saved_data = saved.get("net", {}), saved.get("data", {})
    problems = []
    for key in ("img_resolution", "img_channels", "c_dim", "z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers"):
        if key in saved_net and saved_net[key] != getattr(net, key):
            problems.append(f"{key} {saved_net[key]} -> {getattr(net, key)}")
    if "class_names" in saved_data and saved_data["class_names"] != data_info.get("class_names"):
        problems.append(f"classes {saved_data['class_names']} -> {data_info.get('class_names')}")
    if problems:
        raise ValueError(
            f"resume={ckpt_path} was trained with other settings ({'; '.join(problems)}); resume with the "
            f"run's own dataset/model/resolution overrides (see its .hydra/overrides.yaml)"
        )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def train(cfg: DictConfig) -> Path:
    """Trains StyleGAN2 as the config says and returns the run folder."""
    # G_ema stays in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    t = cfg.trainer
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(t.benchmark)
        torch.backends.cuda.matmul.allow_tf32 = bool(t.allow_tf32)
        torch.backends.cudnn.allow_tf32 = bool(t.allow_tf32)
    ckpt_path = resolve_resume(cfg.resume)
    schedule = cfg.schedule
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    callbacks: list[pl.Callback] = []
    if schedule.get("fid_kimg"):  # before the checkpoint callback, so last.ckpt holds the best FID
        cache = _optional_path(cfg.dataset.get("cache_dir"))
        callbacks.append(FIDMonitor(
            run_dir / "checkpoints", schedule.fid_kimg, schedule.fid_num_gen,
            cache_dir=str(Path(cache).parent / "stats") if cache else None, seed=cfg.seed,
        ))

    trainer = pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=t.precision,
        strategy=t.strategy,
        max_epochs=-1,
        max_steps=-1,
        max_time=t.get("max_time"),
        logger=logger,
        enable_checkpointing=False,
        use_distributed_sampler=False,  # the datamodule's InfiniteSampler shards by rank itself
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=t.deterministic,
        benchmark=t.benchmark if torch.cuda.is_available() else None,
        default_root_dir=str(run_dir),
        enable_model_summary=True,
        callbacks=callbacks + [
            KimgCheckpoint(run_dir / "checkpoints", schedule.snapshot_kimg, schedule.last_kimg),
            SampleGrids(run_dir / "samples", schedule.image_kimg),
            ScalarLogger(schedule.log_kimg),
            KimgProgressBar(cfg.kimg, cfg.batch_size),
        ],
    )
    if trainer.world_size > 1:
        # Per-rank seeds, gradient reduction across G/D phases and rank-consistent ADA are not
        # in place yet; refuse rather than train something subtly wrong.
        raise NotImplementedError(
            f"{trainer.world_size} processes requested (trainer.devices x trainer.num_nodes): "
            "multi-GPU training is not supported yet; use trainer.devices=1"
        )
    dm = build_datamodule(cfg, trainer.world_size, run_dir if trainer.is_global_zero else None)
    # The data decides the number of classes and the native image size that the model stores.
    dm.prepare_data()
    dm.setup("fit")
    c_dim = conditioning_classes(cfg.model.conditional, dm.num_classes)
    net, train_cfg = build_configs(cfg, c_dim)
    module = StyleGAN2Module(net, train_cfg, dm.data_info())
    if ckpt_path is not None:
        # The sampler resumes at the images this process has already consumed.
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        check_resume_matches(state, net, module.data_info, ckpt_path)
        dm.start_index = int(state["braingan"]["cur_nimg"]) // trainer.world_size
        module.last_good_ckpt = str(ckpt_path)
        del state
    if trainer.is_global_zero:
        logger.log_hyperparams(_flatten(OmegaConf.to_container(cfg, resolve=True)))
    # Our checkpoints carry RNG states (numpy arrays), so they are not weights-only files.
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=False)
    return run_dir


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    train(cfg)


def main() -> None:
    args = replay_overrides(normalize_overrides(sys.argv[1:]))
    # With no trainer= override, pick the hardware that is there.
    if not any(a.split("=")[0].lstrip("+~") == "trainer" for a in args):
        args.insert(0, "trainer=" + ("gpu" if torch.cuda.is_available() else "cpu"))
    sys.argv = sys.argv[:1] + args
    _hydra_main()


if __name__ == "__main__":
    main()
