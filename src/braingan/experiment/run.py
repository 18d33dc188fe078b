"""A training run from a composed config: check, continue or start, fit, and end in one line.

Everything that can refuse the command (the settings, the checkpoint to continue, the data, the
trainer settings) is checked before anything is written into the run folder: a refused command
leaves an existing run exactly as it was.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import signal
import warnings
from pathlib import Path
from typing import cast

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..checkpoint import CheckpointInfo, read_info
from ..data.datamodule import SliceDataModule
from ..data.manifest import write_manifest
from ..reporting.tensorboard import EVAL_TAGS
from ..rundir import HYDRA_SUBDIR, RunDir
from ..training.callbacks import log_hyperparameters
from ..training.fid_monitor import fid_tag
from ..training.module import StyleGAN2Module
from ..utils.errors import Interrupted, NoSpaceError, UsageError, UserError
from ..utils.io import atomic_path, is_no_space, remove_stale_temporaries
from .command import DEFER_HYDRA_FILES
from .finetune import init_notes, init_record, initialize, network_for_init, read_source
from .resume import check_resume_matches, continue_checkpoint, is_unset, resolve_resume, resume_notes
from .settings import check_settings, data_and_configs, flat_settings
from .trainer import build_trainer, requested_processes, set_backends

log = logging.getLogger("braingan.train")

# Scalars shown beside the hyperparameters in TensorBoard's HPARAMS tab (their last values); the
# FID during training and make eval's metrics join them (hparams_metric_tags).
HPARAMS_METRICS = ("Loss/G", "Loss/D", "D/real", "D/fake", "ADA/p", "Progress/kimg")


def hparams_metric_tags(run_config: dict) -> tuple[str, ...]:
    """The HPARAMS tab's metric columns of a run with these flattened settings (train at its start, make eval after)."""
    fid = (fid_tag(int(run_config["schedule/fid_num_gen"])),) if run_config.get("schedule/fid_kimg") else ()
    return HPARAMS_METRICS + fid + EVAL_TAGS


def train(cfg: DictConfig) -> Path:
    """Trains StyleGAN2 as the config says and returns the run folder."""
    # G_ema stays in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    run = RunDir(cfg.run_dir)
    processes = requested_processes(cfg.trainer)
    check_settings(cfg, processes)
    refuse_local_multirun_ddp(processes)
    run_config = flat_settings(cfg)
    with DeferredLogFile() as deferred:
        ckpt_path, info, notes = checkpoint_to_continue(cfg, run, run_config)
        source = read_source(cfg.init, cfg.paths.outputs) if info is None else None  # init=: fine-tune
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        set_backends(cfg.trainer)
        dm, net, train_cfg = data_and_configs(cfg, processes)
        done = 0
        if source is not None:
            net = network_for_init(net, source, dm.class_names)
        if info is not None:
            # Properties of the trained weights, not settings: a resumed run computes as it was trained.
            net = net.trained_like(info.net)
            check_resume_matches(info, net, dm.data_info())
            done = info.cur_nimg
            if done >= cfg.kimg * 1000:  # e.g. a requeue of a job that had already finished
                print(
                    f"[braingan] {ckpt_path} is at {done / 1000:g} kimg of kimg={cfg.kimg}: nothing left to train",
                    flush=True,
                )
                return run.path
        module = StyleGAN2Module(net, train_cfg, dm.data_info())
        module.run_config = run_config  # saved in checkpoints: a requeued job checks it is the same run
        if source is not None:
            report = initialize(module, source, strict=cfg.init_strict, keep_ada=cfg.init_keep_ada)
            module.init_source = init_record(source, report, cfg.init_strict, cfg.init_keep_ada, train_cfg.freeze_d)
            notes += init_notes(module.init_source, report)
        elif info is None and train_cfg.freeze_d > 0:
            notes.append(
                f"model.freeze_d={train_cfg.freeze_d} without init=: D's first {train_cfg.freeze_d} blocks keep their "
                "random initialization"
            )
        elif info is not None and not is_unset(cfg.get("init")):
            notes.append(f"init={cfg.init} is not used: a continued run trains on from its own checkpoint")
        trainer, preemption = build_trainer(cfg, run)
        # Everything is checked: from here on the run folder is written.
        run.path.mkdir(parents=True, exist_ok=True)
        deferred.commit()
    try:
        log.info("%s %s at %g of %g kimg", "continuing" if ckpt_path else "starting", run.path, done / 1000, cfg.kimg)
        for note in notes:
            log.warning(note)
        if trainer.is_global_zero:
            write_run_files(cfg, run, trainer, dm, run_config, module.init_source)
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
            raise NoSpaceError(no_space_message(run, cast(OSError, error))) from None  # is_no_space: an OSError
        # Launchers (submitit) keep the exception in their own files: put it in the run's log too.
        log.exception("training failed")
        raise
    if preemption.stop_signal is not None:
        if trainer.is_global_zero:  # one line from the run; the other ranks end quietly
            raise Interrupted(preemption.stop_message(), preemption.stop_signal)
        return run.path
    if preemption.received is not None:
        print(f"[braingan] {preemption.requeue(trainer.is_global_zero)}", flush=True)
    return run.path


def checkpoint_to_continue(
    cfg: DictConfig, run: RunDir, run_config: dict
) -> tuple[Path | None, CheckpointInfo | None, list[str]]:
    """(checkpoint, what it says, warnings) of resume=, or of the run already in the folder; Nones for a new run."""
    ckpt_path = resolve_resume(cfg.resume, cfg.paths.outputs)
    if ckpt_path is not None:
        info = read_info(ckpt_path, setting="resume")
        return ckpt_path, info, resume_notes(info, run_config)
    # A requeued SLURM job (or a rerun of the same command into the same folder) continues.
    ckpt_path = continue_checkpoint(run, run_config)
    if ckpt_path is None:
        return None, None, []
    print(f"[braingan] {run.path} already holds a run: continuing from {ckpt_path}", flush=True)
    return ckpt_path, read_info(ckpt_path, setting="resume"), []


def write_run_files(
    cfg: DictConfig, run: RunDir, trainer: pl.Trainer, dm: SliceDataModule, run_config: dict, init: dict | None = None
) -> None:
    """Rank 0, once the command is checked: stale temporaries out; .hydra/, manifest.csv (+ init.json) and the hyperparameters in."""
    stale = remove_stale_temporaries(run.checkpoints)
    if stale:
        log.warning(
            "removed %d temporary file(s) of an interrupted checkpoint write: %s",
            len(stale),
            ", ".join(p.name for p in stale),
        )
    save_run_files(run, cfg)
    write_manifest(dm.records, run.manifest)
    if init is not None:  # where a fine-tuned run's weights came from, beside its manifest
        with atomic_path(run.init) as tmp:
            tmp.write_text(json.dumps(init, indent=2) + "\n", encoding="utf-8")
    log_hyperparameters(trainer.logger, run_config, hparams_metric_tags(run_config))


def save_run_files(run: RunDir, cfg: DictConfig) -> None:
    """<run>/.hydra/{config,hydra,overrides}.yaml as Hydra writes them, unless Hydra wrote them itself.

    A resume replays the run's overrides.yaml, so a refused command must never rewrite it.
    """
    from hydra.core.hydra_config import HydraConfig

    if (
        not HydraConfig.initialized()
        or HydraConfig.get().job.config_name != "train"
        or HydraConfig.get().output_subdir is not None
    ):  # another tool's train() call, or Hydra wrote them
        return
    hc = OmegaConf.create({"hydra": OmegaConf.to_container(HydraConfig.get(), resolve=False)})
    hc.hydra.output_subdir = HYDRA_SUBDIR
    hc.hydra.overrides.hydra = [o for o in hc.hydra.overrides.hydra if o != DEFER_HYDRA_FILES]
    for path, node in ((run.config, cfg), (run.hydra_config, hc), (run.overrides, hc.hydra.overrides.task)):
        with atomic_path(path) as tmp:
            tmp.write_text(OmegaConf.to_yaml(node), encoding="utf-8")


def no_space_message(run: RunDir, error: OSError) -> str:
    """'no space left on <folder>; the previous last.ckpt (<kimg> kimg) is intact ...' for a failed write."""
    folder = Path(error.filename).parent if error.filename else run.path
    try:
        kept = (
            f"the previous {run.last.name} ({read_info(run.last).kimg:g} kimg) is intact: free space, then "
            f"continue with resume={run.last}"
        )
    except (UsageError, OSError):  # none yet, or not readable
        kept = "no checkpoint of this run was written yet"
    return f"no space left on {folder} ({error.strerror}); {kept}"


def refuse_local_multirun_ddp(processes: int) -> None:
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


class DeferredLogFile:
    """Holds back what would go into the run's log file until the command is known to run.

    Hydra's job logging appends to <run>/train.log from the first line on, but a command that is
    refused must leave an existing run's files as they were. Inside the block the root logger's
    file handlers are replaced by one memory buffer; `commit()` writes the buffer to them and puts
    them back; leaving the block without `commit()` drops it (the console saw every line anyway).
    """

    def __enter__(self) -> DeferredLogFile:
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
