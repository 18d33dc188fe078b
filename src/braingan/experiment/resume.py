"""Which checkpoint a command continues, and whether it may: the continue/resume policy.

- `resume=<file>` (or `resume=last`, `make resume`) continues a run on purpose, in the run's own
  folder, replaying the run's own command-line overrides (`replay_overrides`). Settings that shape
  the weights may not change (RESUME_MAY_NOT_CHANGE); any other change is allowed and named.
- A command whose run folder already holds a run (a requeued SLURM job) continues that run only
  if the settings are the same, apart from CONTINUE_MAY_CHANGE (`continue_checkpoint`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from ..checkpoint import CheckpointInfo, read_info
from ..nn.config import NetworkConfig
from ..rundir import OUTPUTS, RunDir, newest_last_checkpoint
from ..utils.errors import MissingFileError, UsageError

# Settings a run may change when it continues in its own folder: its length, where and on how
# many processes it runs (and in passes of how many images: batch_gpu), how often it writes.
CONTINUE_MAY_CHANGE = (
    "kimg",
    "batch_gpu",
    "resume",
    "run_dir",
    "trainer.max_time",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.num_workers",
    "dataset.cache_dir",
    "paths.",
    "schedule.",
    "speed.",
)

# Settings that shape the weights: a resume may not change them (the checkpoint would not load).
# The classes are compared once the data is read (check_resume_matches). A resume may change any
# other setting, and is told which ones it changed.
RESUME_MAY_NOT_CHANGE = (
    "resolution",
    "img_channels",
    "model/z_dim",
    "model/w_dim",
    "model/mapping_layers",
    "model/d_mapping_layers",
    "model/channel_base",
    "model/channel_max",
)

# What differs on every resume (the checkpoint given, and where Hydra put the run).
RESUME_ALWAYS_CHANGES = ("resume", "run_dir")

# Overrides of the original run that a resume must not repeat: where it ran and what it resumed.
NOT_REPLAYED = ("resume", "run_dir", "hydra.")
QUOTES = r"[\"']"


def is_unset(value) -> bool:
    return value in (None, "", "null", "None")


def resolve_resume(resume: str | None, outputs: str | os.PathLike = OUTPUTS, setting: str = "resume") -> Path | None:
    """resume=null -> None; resume=last -> the newest last.ckpt under `outputs`; else the given file (must exist).

    `setting` names the key in the messages: init= (experiment/finetune.py) takes a checkpoint the same way.
    """
    if is_unset(resume):
        return None
    if str(resume) == "last":
        return newest_last_checkpoint(outputs, setting=setting)
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{setting}={resume}: no such checkpoint file")
    return path


def resolve_ckpt(ckpt: str | os.PathLike | None, outputs: str | os.PathLike = OUTPUTS) -> Path:
    """ckpt=null or 'last' -> the newest last.ckpt under `outputs`; else that file (must exist)."""
    if is_unset(ckpt) or str(ckpt) == "last":
        return newest_last_checkpoint(outputs, setting="ckpt")
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise MissingFileError(f"ckpt={ckpt}: no such checkpoint file")
    return path


def resolve_source(ckpt: str | os.PathLike | None, outputs: str | os.PathLike = OUTPUTS) -> Path:
    """resolve_ckpt, or a named folder as it is (a `make export` folder: its reader checks it)."""
    if not is_unset(ckpt) and str(ckpt) != "last" and Path(str(ckpt)).expanduser().is_dir():
        return Path(str(ckpt)).expanduser()
    return resolve_ckpt(ckpt, outputs)


def run_dir_for_resume(resume: str | None, default: str) -> str:
    """Run folder for Hydra: a resumed run continues in the folder of its checkpoint."""
    ckpt = resolve_resume(resume)
    return default if ckpt is None else str(RunDir.of_checkpoint(ckpt).path)


def replay_overrides(args: list[str]) -> list[str]:
    """For a resume, the original run's command-line overrides followed by `args` (later wins).

    `make resume` must continue the run that was started, on its data and model, not on the
    defaults: Hydra saved that run's overrides in <run>/.hydra/overrides.yaml. Anything given
    again on the command line overrides the saved value. Without resume= nothing changes.
    Overrides saved by format-1 runs are read as they meant it (`legacy_overrides`).
    """
    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    ckpt = resolve_resume(resume, outputs_of(args))
    if ckpt is None:
        return args
    saved = RunDir.of_checkpoint(ckpt).overrides
    if not saved.is_file():
        return args
    previous = [str(o) for o in OmegaConf.load(saved)]
    keep = [o for o in previous if not o.lstrip("+~").startswith(NOT_REPLAYED)]
    if read_info(ckpt, setting="resume").format_version < 2:
        keep = legacy_overrides(keep)
    return keep + args


def legacy_overrides(overrides: list[str]) -> list[str]:
    """A format-1 run's saved overrides in today's terms.

    Then `resolution` was a config group (saved quoted: resolution='64') and trainer=cpu chose the
    CPU preset; now resolution is a plain number and the preset is experiment=cpu.
    """
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+~") == "resolution":
            o = f"{key}={re.sub(QUOTES, '', value)}"
        elif (
            key.lstrip("+~") == "trainer" and value == "cpu" and not any(x.startswith("experiment=") for x in overrides)
        ):
            o = "experiment=cpu"
        out.append(o)
    return out


def outputs_of(args: list[str]) -> str:
    """paths.outputs= of the command line, else the default folder of the run folders."""
    return next((a.split("=", 1)[1] for a in args if a.lstrip("+~").startswith("paths.outputs=")), str(OUTPUTS))


def changed_settings(
    saved: dict, current: dict, may_change: tuple[str, ...] = CONTINUE_MAY_CHANGE
) -> list[tuple[str, object, object]]:
    """(key, saved, current) for the flattened settings that differ, except the prefixes `may_change`.

    Only keys both sides have count: a key the run's settings lack is newer than the run (the
    checkpoint decides it, see NetworkConfig.trained_like), and one the command lacks is gone.
    """
    return [
        (k, saved[k], current[k])
        for k in sorted(saved)
        if k in current and not k.replace("/", ".").startswith(may_change) and saved[k] != current[k]
    ]


def config_differences(saved: dict, current: dict) -> list[str]:
    """'key: saved -> current' for the flattened settings that differ, except CONTINUE_MAY_CHANGE."""
    return [f"{k.replace('/', '.')}: {a} -> {b}" for k, a, b in changed_settings(saved, current)]


def continue_checkpoint(run: RunDir, run_config: dict) -> Path | None:
    """The run folder's last.ckpt when it holds this same run (a requeued job continues it), else None.

    A folder holding a run with other settings is refused: its results would be mixed up with
    the new ones (use resume= to continue a run on purpose, or another folder).
    """
    last = run.existing_last()
    if last is None:
        return None
    saved = read_info(last, setting="resume").run_config
    diff = config_differences(saved, run_config) if saved is not None else []
    if diff:
        raise UsageError(
            f"{run.path} already holds a run with other settings ({'; '.join(diff[:6])}); start in another folder "
            "(hydra.run.dir=...) or continue that run with resume=<its last.ckpt>"
        )
    return last


def resume_notes(info: CheckpointInfo, run_config: dict) -> list[str]:
    """Refuses a resume that changes RESUME_MAY_NOT_CHANGE; one warning for each other changed setting (kimg too)."""
    saved = info.run_config
    if saved is None:  # written before checkpoints stored their settings: check_resume_matches compares shapes
        return []
    changes = changed_settings(saved, run_config, may_change=RESUME_ALWAYS_CHANGES)
    refused = [f"{k.replace('/', '.')}: {a} -> {b}" for k, a, b in changes if k in RESUME_MAY_NOT_CHANGE]
    if refused:
        raise UsageError(
            f"resume={info.path} was trained with other settings ({'; '.join(refused)}); leave them out: a resume "
            "replays the run's own overrides (its .hydra/overrides.yaml)"
        )
    return [
        f"resume: {k.replace('/', '.')} differs from the run's setting ({a} -> {b}); continuing with {b}"
        for k, a, b in changes
    ]


def check_resume_matches(info: CheckpointInfo, net: NetworkConfig, data_info: dict) -> None:
    """Refuse to resume onto different classes or another network shape, in one line."""
    saved_net, saved_data = info.net_dict, info.data
    problems = []
    for key in (
        "img_resolution",
        "img_channels",
        "c_dim",
        "z_dim",
        "w_dim",
        "channel_base",
        "channel_max",
        "mapping_layers",
    ):
        if key in saved_net and saved_net[key] != getattr(net, key):
            problems.append(f"{key} {saved_net[key]} -> {getattr(net, key)}")
    if "class_names" in saved_data and saved_data["class_names"] != data_info.get("class_names"):
        problems.append(f"classes {saved_data['class_names']} -> {data_info.get('class_names')}")
    if problems:
        raise UsageError(
            f"resume={info.path} was trained with other settings ({'; '.join(problems)}); resume with the "
            f"run's own dataset/model/resolution overrides (see its .hydra/overrides.yaml)"
        )
