"""Entry point: `python -m braingan.train [overrides]` (what `make train` runs).

Hydra composes conf/train.yaml with the dataset/, model/, resolution/ and trainer/ groups;
`main` hands the composed config to the plain function `train`, which knows no Hydra.
"""
from __future__ import annotations

import logging
import logging.handlers
import math
import os
import signal
import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from . import cli
from .checkpoint import checkpoint_kimg, read_checkpoint
from .conf_utils import (
    CONF_DIR,
    insert_overrides,
    normalize_overrides,
    register_resolvers,
    replay_overrides,
    resolve_resume,
)
from .data.datamodule import SliceDataModule
from .data.manifest import write_manifest
from .nn.config import NetworkConfig
from .training.callbacks import (
    DirectCheckpointIO,
    KimgCheckpoint,
    KimgProgressBar,
    SampleGrids,
    ScalarLogger,
    log_hyperparameters,
)
from .training.config import TrainConfig
from .training.distributed import GANDDPStrategy
from .training.fid_monitor import FIDMonitor
from .training.module import StyleGAN2Module
from .training.preemption import Preemption
from .utils.errors import Interrupted, NoSpaceError, UsageError, UserError
from .utils.io import atomic_path, is_no_space, remove_stale_temporaries

register_resolvers()
log = logging.getLogger("braingan.train")


def _optional_path(value) -> str | None:
    return None if value is None or str(value) == "" else str(Path(os.path.expanduser(str(value))))


def build_datamodule(cfg: DictConfig, world_size: int = 1, run_dir: Path | None = None) -> SliceDataModule:
    ds = cfg.dataset
    if cfg.batch_size % world_size != 0:
        raise UsageError(f"batch_size={cfg.batch_size} (global) is not divisible by the {world_size} processes")
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
        raise UsageError(f"model.conditional={conditional} must be auto, true or false")
    if mode == "true" and num_classes < 2:
        raise UsageError(
            f"model.conditional=true but the training data has {num_classes} class; use labelled data "
            "(dataset=adni, or dataset=folder dataset.labels=true) with two or more classes"
        )
    if mode == "false" or num_classes < 2:
        return 0
    return num_classes


def build_configs(cfg: DictConfig, c_dim: int = 0, precision: str = "32-true") -> tuple[NetworkConfig, TrainConfig]:
    """The typed configs of a run; `precision` (the trainer's) resolves model.conv_clamp=auto.

    model.r1_gamma=auto and model.ema_kimg=auto resolve from the resolution and the global batch.
    """
    m, aug = cfg.model, cfg.augment
    num_fp16_res = int(m.get("num_fp16_res", 4))
    net = NetworkConfig(
        img_resolution=cfg.resolution,
        img_channels=cfg.img_channels,
        z_dim=m.z_dim,
        w_dim=m.w_dim,
        c_dim=c_dim,
        mapping_layers=m.mapping_layers,
        d_mapping_layers=int(m.d_mapping_layers),
        channel_base=m.channel_base,
        channel_max=m.channel_max,
        conv_clamp=NetworkConfig.resolve_conv_clamp(m.conv_clamp, precision, num_fp16_res),
        num_fp16_res=num_fp16_res,
        mbstd_group_size=m.mbstd_group_size,
        fused_modconv=m.fused_modconv,
        fused_upconv=bool(cfg.speed.fused_upconv),
        fused_bias_act=bool(cfg.speed.fused_bias_act),
        channels_last=resolve_channels_last(cfg.speed.channels_last, cfg.trainer.accelerator),
    )
    train = TrainConfig(
        batch_size=cfg.batch_size,
        total_kimg=cfg.kimg,
        lr_g=m.lr_g,
        lr_d=m.lr_d,
        r1_gamma=TrainConfig.resolve_r1_gamma(m.r1_gamma, cfg.resolution, cfg.batch_size),
        r1_interval=m.r1_interval,
        pl_weight=m.pl_weight,
        pl_interval=m.pl_interval,
        pl_decay=m.pl_decay,
        pl_batch_shrink=m.pl_batch_shrink,
        style_mixing=m.style_mixing,
        ema_kimg=TrainConfig.resolve_ema_kimg(m.ema_kimg, cfg.batch_size),
        ema_rampup=m.ema_rampup,
        augment=aug.mode,
        augment_p=aug.p,
        ada_target=aug.target,
        ada_interval=aug.interval,
        ada_kimg=aug.kimg,
        augment_kwargs=OmegaConf.to_container(aug.pipe, resolve=True),
        max_nonfinite=cfg.max_nonfinite,
        num_samples=cfg.schedule.num_samples,
        compile=bool(cfg.speed.compile),
        compile_mode=str(cfg.speed.compile_mode),
        compile_backend=str(cfg.speed.compile_backend),
    )
    return net, train


def data_and_configs(cfg: DictConfig, world_size: int = 1, manifest_dir: Path | None = None
                     ) -> tuple[SliceDataModule, NetworkConfig, TrainConfig]:
    """The run's datamodule, set up, and its typed configs (train and make bench).

    The data decides the number of classes and the native image size that the model stores;
    `manifest_dir` gets the run's manifest.csv (None: nothing is written).
    """
    dm = build_datamodule(cfg, world_size, manifest_dir)
    dm.prepare_data()
    dm.setup("fit")
    c_dim = conditioning_classes(cfg.model.conditional, dm.num_classes)
    net, train_cfg = build_configs(cfg, c_dim, str(cfg.trainer.precision))
    return dm, net, train_cfg


def resolve_channels_last(setting, accelerator: str) -> bool:
    """speed.channels_last: auto = on when training on CUDA (where cuDNN has NHWC kernels), off on the CPU."""
    if str(setting).lower() == "auto":
        return str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    return bool(setting)


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
        raise UsageError(
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
        return GANDDPStrategy(process_group_backend="nccl" if str(trainer_cfg.accelerator) != "cpu" and torch.cuda.is_available() else "gloo")
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
    """The pl.Trainer arguments every StyleGAN2 run shares (training and make bench)."""
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


def existing_checkpoint(run_dir: Path) -> Path | None:
    """checkpoints/last.ckpt of a run folder that already holds a run (a requeued job), else None."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


# Settings a run may change when it continues in its own folder: its length, where and on how
# many processes it runs, how often it writes.
CONTINUE_MAY_CHANGE = ("kimg", "resume", "run_dir", "trainer.max_time", "trainer.devices", "trainer.num_nodes",
                       "trainer.num_workers", "dataset.cache_dir", "schedule.", "speed.")

# Settings that shape the weights: a resume may not change them (the checkpoint would not load).
# The classes are compared once the data is read (check_resume_matches). A resume may change any
# other setting, and is told which ones it changed.
RESUME_MAY_NOT_CHANGE = ("resolution", "img_channels", "model/z_dim", "model/w_dim", "model/mapping_layers",
                         "model/d_mapping_layers", "model/channel_base", "model/channel_max")


# What differs on every resume (the checkpoint given, and where Hydra put the run).
RESUME_ALWAYS_CHANGES = ("resume", "run_dir")


def changed_settings(saved: dict, current: dict, may_change: tuple[str, ...] = CONTINUE_MAY_CHANGE
                     ) -> list[tuple[str, object, object]]:
    """(key, saved, current) for the flattened settings that differ, except the prefixes `may_change`.

    Only keys both sides have count: a key the run's settings lack is newer than the run (the
    checkpoint decides it, see NetworkConfig.trained_like), and one the command lacks is gone.
    """
    return [(k, saved[k], current[k]) for k in sorted(saved)
            if k in current and not k.replace("/", ".").startswith(may_change) and saved[k] != current[k]]


def config_differences(saved: dict, current: dict) -> list[str]:
    """'key: saved -> current' for the flattened settings that differ, except CONTINUE_MAY_CHANGE."""
    return [f"{k.replace('/', '.')}: {a} -> {b}" for k, a, b in changed_settings(saved, current)]


def continue_checkpoint(run_dir: Path, run_config: dict) -> Path | None:
    """The run folder's last.ckpt when it holds this same run (a requeued job continues it), else None.

    A folder holding a run with other settings is refused: its results would be mixed up with
    the new ones (use resume= to continue a run on purpose, or another folder).
    """
    last = existing_checkpoint(run_dir)
    if last is None:
        return None
    saved = read_checkpoint(last, mmap=True, setting="resume")["braingan"].get("run_config")
    diff = config_differences(saved, run_config) if saved is not None else []
    if diff:
        raise UsageError(
            f"{run_dir} already holds a run with other settings ({'; '.join(diff[:6])}); start in another folder "
            "(hydra.run.dir=...) or continue that run with resume=<its last.ckpt>"
        )
    return last


def resume_notes(state: dict, run_config: dict, ckpt_path: Path) -> list[str]:
    """Refuses a resume that changes RESUME_MAY_NOT_CHANGE; one warning for each other changed setting (kimg too)."""
    saved = state["braingan"].get("run_config")
    if saved is None:  # written before checkpoints stored their settings: check_resume_matches compares shapes
        return []
    changes = changed_settings(saved, run_config, may_change=RESUME_ALWAYS_CHANGES)
    refused = [f"{k.replace('/', '.')}: {a} -> {b}" for k, a, b in changes if k in RESUME_MAY_NOT_CHANGE]
    if refused:
        raise UsageError(
            f"resume={ckpt_path} was trained with other settings ({'; '.join(refused)}); leave them out: a resume "
            "replays the run's own overrides (its .hydra/overrides.yaml)"
        )
    return [f"resume: {k.replace('/', '.')} differs from the run's setting ({a} -> {b}); continuing with {b}"
            for k, a, b in changes]


def check_settings(cfg: DictConfig, processes: int) -> None:
    """Refuses, in one line, settings that cannot train, before any data is decoded or any file written."""
    batch, kimg = cfg.batch_size, cfg.kimg
    if not _is_int(batch) or batch < 1:
        raise UsageError(f"batch_size={batch} must be a whole number >= 1 (the global batch over all processes)")
    if not _is_number(kimg) or not (kimg > 0 and math.isfinite(kimg)):
        raise UsageError(f"kimg={kimg} must be a number > 0 (the training length in thousands of real images)")
    if processes < 1:
        raise UsageError(f"trainer.devices x trainer.num_nodes = {processes}: need at least one process")
    if batch % processes:
        raise UsageError(
            f"batch_size={batch} is not divisible by the {processes} processes (trainer.devices x trainer.num_nodes); "
            f"each takes an equal share of the global batch: use a multiple of {processes}"
        )
    per_process, group = batch // processes, cfg.model.mbstd_group_size
    if not _is_int(group) or group < 0:
        raise UsageError(f"model.mbstd_group_size={group} must be a whole number >= 0 (0 = no minibatch std)")
    if group > 0 and per_process % min(group, per_process):
        share = f" ({per_process} per process)" if processes > 1 else ""
        raise UsageError(
            f"batch_size={batch}{share} is not divisible by the minibatch-std group size model.mbstd_group_size={group}; "
            f"use a multiple of {group} images per process"
        )
    for key in ("log_kimg", "image_kimg", "last_kimg", "snapshot_kimg", "fid_kimg"):
        value = cfg.schedule.get(key)
        if value is not None and (not _is_number(value) or value < 0):
            raise UsageError(f"schedule.{key}={value} must be a number of kimg >= 0 (0 or null = never)")
    if not _is_int(cfg.max_nonfinite) or cfg.max_nonfinite < 1:
        raise UsageError(f"max_nonfinite={cfg.max_nonfinite} must be a whole number >= 1")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refuse_local_multirun_ddp(processes: int) -> None:
    """Lightning starts extra ranks by re-running the command line: under a local -m sweep each would run the whole sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if processes < 2 or SLURMEnvironment.detect() or not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and str(hc.launcher.get("_target_", "")).endswith("BasicLauncher"):
        raise UsageError(
            f"{processes} processes per run inside a local multirun sweep are not supported; sweep through "
            "SLURM (make sweep) or run the points one by one"
        )


class _DeferredLogFile:
    """Holds back what would go into the run's log file until the command is known to run.

    Hydra's job logging appends to <run>/train.log from the first line on, but a command that is
    refused must leave an existing run's files as they were. Inside the block the root logger's
    file handlers are replaced by one memory buffer; `commit()` writes the buffer to them and puts
    them back; leaving the block without `commit()` drops it (the console saw every line anyway).
    """

    def __enter__(self) -> "_DeferredLogFile":
        root = logging.getLogger()
        self.files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        self.buffer = logging.handlers.BufferingHandler(capacity=10**9)
        for handler in self.files:
            root.removeHandler(handler)
        root.addHandler(self.buffer)
        self.committed = False
        return self

    def _restore(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.buffer)
        for handler in self.files:
            root.addHandler(handler)

    def commit(self) -> None:
        self._restore()
        for record in self.buffer.buffer:
            for handler in self.files:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.buffer.buffer.clear()
        self.committed = True

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self._restore()


# main() turns Hydra's own early write of <run>/.hydra off with this override; train() writes the
# same three files once the command is known to run (`save_run_files`).
HYDRA_SUBDIR = ".hydra"
DEFER_HYDRA_FILES = "hydra.output_subdir=null"


def save_run_files(run_dir: Path, cfg: DictConfig) -> None:
    """<run>/.hydra/{config,hydra,overrides}.yaml as Hydra writes them, unless Hydra wrote them itself.

    A resume replays the run's overrides.yaml, so a refused command must never rewrite it.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().job.config_name != "train" \
            or HydraConfig.get().output_subdir is not None:  # another tool's train() call, or Hydra wrote them
        return
    hc = OmegaConf.create({"hydra": OmegaConf.to_container(HydraConfig.get(), resolve=False)})
    hc.hydra.output_subdir = HYDRA_SUBDIR
    hc.hydra.overrides.hydra = [o for o in hc.hydra.overrides.hydra if o != DEFER_HYDRA_FILES]
    folder = run_dir / HYDRA_SUBDIR
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hc), ("overrides.yaml", hc.hydra.overrides.task)):
        with atomic_path(folder / name) as tmp:
            tmp.write_text(OmegaConf.to_yaml(node), encoding="utf-8")


def no_space_message(run_dir: Path, error: OSError) -> str:
    """'no space left on <folder>; the previous last.ckpt (<kimg> kimg) is intact ...' for a failed write."""
    folder = Path(error.filename).parent if error.filename else run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        kept = (f"the previous last.ckpt ({checkpoint_kimg(last):g} kimg) is intact: free space, then continue "
                f"with resume={last}")
    except (UsageError, OSError):  # none yet, or not readable
        kept = "no checkpoint of this run was written yet"
    return f"no space left on {folder} ({error.strerror}); {kept}"


def train(cfg: DictConfig) -> Path:
    """Trains StyleGAN2 as the config says and returns the run folder.

    Everything that can refuse the command (the settings, the checkpoint to continue, the data,
    the trainer settings) is checked before anything is written into the run folder: a refused
    command leaves an existing run exactly as it was.
    """
    # G_ema stays in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    run_dir = Path(cfg.run_dir)
    processes = requested_processes(cfg.trainer)
    check_settings(cfg, processes)
    _refuse_local_multirun_ddp(processes)
    run_config = _flatten(OmegaConf.to_container(cfg, resolve=True))
    with _DeferredLogFile() as deferred:
        ckpt_path, state, notes = _checkpoint_to_continue(cfg, run_dir, run_config)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        set_backends(cfg.trainer)
        dm, net, train_cfg = data_and_configs(cfg, processes)
        done = 0
        if state is not None:
            # Properties of the trained weights, not settings: a resumed run computes as it was trained.
            net = net.trained_like(NetworkConfig.from_dict(state["hyper_parameters"]["net"]))
            check_resume_matches(state, net, dm.data_info(), ckpt_path)
            done = int(state["braingan"]["cur_nimg"])
            del state
            if done >= cfg.kimg * 1000:  # e.g. a requeue of a job that had already finished
                print(f"[braingan] {ckpt_path} is at {done / 1000:g} kimg of kimg={cfg.kimg}: nothing left to train", flush=True)
                return run_dir
        module = StyleGAN2Module(net, train_cfg, dm.data_info())
        module.run_config = run_config  # saved in checkpoints: a requeued job checks it is the same run
        trainer, preemption = _build_trainer(cfg, run_dir)
        # Everything is checked: from here on the run folder is written.
        run_dir.mkdir(parents=True, exist_ok=True)
        deferred.commit()
    try:
        log.info("%s %s at %g of %g kimg", "continuing" if ckpt_path else "starting", run_dir, done / 1000, cfg.kimg)
        for note in notes:
            log.warning(note)
        if trainer.is_global_zero:
            _write_run_files(cfg, run_dir, trainer, dm, run_config)
        if ckpt_path is not None:
            dm.start_index = done // trainer.world_size  # the sampler resumes at the images this process consumed
            module.last_good_ckpt = str(ckpt_path)
        # Our checkpoints carry RNG states (numpy arrays), so they are not weights-only files.
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=False)
    except SIGTERMException:  # Lightning's handler, before ours was installed: nothing trained yet
        go_on = f"; continue with resume={ckpt_path}" if ckpt_path else ""
        raise Interrupted(f"stopped by SIGTERM before the first step{go_on}", signal.SIGTERM) from None
    except UserError:
        raise
    except Exception as error:
        if is_no_space(error):
            raise NoSpaceError(no_space_message(run_dir, error)) from None
        # Launchers (submitit) keep the exception in their own files: put it in the run's log too.
        log.exception("training failed")
        raise
    if preemption.stop_signal is not None:
        if trainer.is_global_zero:  # one line from the run; the other ranks end quietly
            raise Interrupted(preemption.stop_message(), preemption.stop_signal)
        return run_dir
    if preemption.received is not None:
        print(f"[braingan] {preemption.requeue(trainer.is_global_zero)}", flush=True)
    return run_dir


def _checkpoint_to_continue(cfg: DictConfig, run_dir: Path, run_config: dict) -> tuple[Path | None, dict | None, list[str]]:
    """(checkpoint, its memory-mapped dict, warnings) of resume=, or of the run already in the folder; Nones for a new run."""
    ckpt_path = resolve_resume(cfg.resume)
    if ckpt_path is not None:
        state = read_checkpoint(ckpt_path, mmap=True, setting="resume")
        return ckpt_path, state, resume_notes(state, run_config, ckpt_path)
    # A requeued SLURM job (or a rerun of the same command into the same folder) continues.
    ckpt_path = continue_checkpoint(run_dir, run_config)
    if ckpt_path is None:
        return None, None, []
    print(f"[braingan] {run_dir} already holds a run: continuing from {ckpt_path}", flush=True)
    return ckpt_path, read_checkpoint(ckpt_path, mmap=True, setting="resume"), []


def _write_run_files(cfg: DictConfig, run_dir: Path, trainer: pl.Trainer, dm: SliceDataModule, run_config: dict) -> None:
    """Rank 0, once the command is checked: stale temporaries out; .hydra/, manifest.csv and the hyperparameters in."""
    stale = remove_stale_temporaries(run_dir / "checkpoints")
    if stale:
        log.warning("removed %d temporary file(s) of an interrupted checkpoint write: %s",
                    len(stale), ", ".join(p.name for p in stale))
    save_run_files(run_dir, cfg)
    write_manifest(dm.records, run_dir / "manifest.csv")
    fid = next((c for c in trainer.callbacks if isinstance(c, FIDMonitor)), None)
    log_hyperparameters(trainer.logger, run_config, HPARAMS_METRICS + ((fid.tag,) if fid else ()))


# Scalars shown beside the hyperparameters in TensorBoard's HPARAMS tab (their last values).
HPARAMS_METRICS = ("Loss/G", "Loss/D", "D/real", "D/fake", "ADA/p", "Progress/kimg")


def _build_trainer(cfg: DictConfig, run_dir: Path) -> tuple[pl.Trainer, Preemption]:
    """The Trainer of a run with its callbacks and logger (writes nothing yet)."""
    t, schedule = cfg.trainer, cfg.schedule
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    callbacks: list[pl.Callback] = []
    if schedule.get("fid_kimg"):  # before the checkpoint callback, so last.ckpt holds the best FID
        cache = _optional_path(cfg.dataset.get("cache_dir"))
        callbacks.append(FIDMonitor(
            run_dir / "checkpoints", schedule.fid_kimg, schedule.fid_num_gen,
            cache_dir=str(Path(cache).parent / "stats") if cache else None, seed=cfg.seed,
        ))
    checkpointing = KimgCheckpoint(run_dir / "checkpoints", schedule.snapshot_kimg, schedule.last_kimg)
    preemption = Preemption(checkpointing, signals=list(cfg.get("requeue_signals") or []),
                            stop_signals=list(cfg.get("stop_signals") or []))
    settings = trainer_settings(t)
    settings["plugins"] = [*(settings["plugins"] or []), DirectCheckpointIO()]
    trainer = pl.Trainer(
        **settings,
        max_time=t.get("max_time"),
        logger=logger,
        enable_checkpointing=False,
        log_every_n_steps=1,
        default_root_dir=str(run_dir),
        enable_model_summary=True,
        callbacks=callbacks + [
            checkpointing,
            preemption,
            SampleGrids(run_dir / "samples", schedule.image_kimg),
            ScalarLogger(schedule.log_kimg),
            KimgProgressBar(cfg.kimg, cfg.batch_size),
        ],
    )
    return trainer, preemption


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    if int(os.environ.get("SLURM_PROCID", "0")) > 0:
        # Every SLURM task of a multi-GPU job runs this job; rank 0 alone writes the run's log file.
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
    with cli.user_errors("train"):
        train(cfg)


def default_trainer_override(args: list[str], cuda: bool) -> str | None:
    """trainer=gpu|cpu for the hardware here, unless the command chose one or runs its jobs elsewhere.

    A sweep submitted through a cluster launcher (hydra/launcher=slurm) runs on compute nodes,
    not on this login node: it keeps the config's default (gpu) instead of guessing from here.
    """
    names = [a.split("=")[0].lstrip("+~") for a in args]
    if "trainer" in names:
        return None
    launcher = next((a.split("=", 1)[1] for a in args if a.split("=")[0].lstrip("+~") == "hydra/launcher"), None)
    if launcher not in (None, "basic"):
        return None
    return "trainer=" + ("gpu" if cuda else "cpu")


def main() -> None:
    with cli.user_errors("train"):
        args = replay_overrides(normalize_overrides(sys.argv[1:]))
        # resume=last, pinned now: ranks that Lightning starts later re-read this command line.
        args = [f"resume={resolve_resume('last').resolve()}" if a == "resume=last" else a for a in args]
        extra = []
        choice = default_trainer_override(args, torch.cuda.is_available())
        if choice is not None:
            extra.append(choice)
        if int(os.environ.get("LOCAL_RANK", "0")) > 0 and "hydra.output_subdir=null" in args:
            # A rank that Lightning's launcher started: rank 0 alone writes the run's log file.
            extra.append("hydra/job_logging=stdout")
        if not any(a.split("=")[0] == "hydra.output_subdir" for a in args) and not {"-m", "--multirun"} & set(args):
            # train() writes <run>/.hydra once the command is known to run. A sweep's jobs each start in
            # a new folder, where Hydra writes them at once (make sweep-report lists a refused job too).
            extra.append(DEFER_HYDRA_FILES)
        args = insert_overrides(args, extra)
        cli.check_overrides("train", args)
    sys.argv = sys.argv[:1] + args
    _hydra_main()


if __name__ == "__main__":
    # Through the module, not __main__: the submitit launcher pickles the task function by name.
    from braingan.train import main as _main

    _main()
