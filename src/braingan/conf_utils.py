"""Hydra/OmegaConf glue shared by the entry points and the tests (Hydra stops here)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from .utils.errors import MissingFileError, UsageError
from .utils.slurm import slurm_job_id

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Config groups whose option names are numbers. Hydra parses `resolution=128` as an int and
# rejects it as a group choice, so such values are quoted before Hydra sees them.
NUMERIC_GROUPS = ("resolution",)


def normalize_overrides(args: list[str]) -> list[str]:
    """Quotes bare numbers in overrides of numeric groups: resolution=64,128 -> resolution='64','128'."""
    out = []
    for a in args:
        m = re.match(r"^([+~]{0,2})(%s)=(.*)$" % "|".join(NUMERIC_GROUPS), a)
        if m:
            a = f"{m.group(1)}{m.group(2)}=" + re.sub(r"(?<!['\w.])(\d+)(?![\w.'])", r"'\1'", m.group(3))
        out.append(a)
    return out


def newest_last_checkpoint(root: str | Path = "outputs") -> Path:
    """The most recently written last.ckpt below `root`."""
    found = sorted(Path(root).glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MissingFileError(f"resume=last: no checkpoints/last.ckpt found under {Path(root).resolve()}")
    return found[-1]


def resolve_resume(resume: str | None, outputs_root: str | Path = "outputs") -> Path | None:
    """resume=null -> None; resume=last -> newest last.ckpt under outputs; else the given file."""
    if resume in (None, "", "null", "None"):
        return None
    if str(resume) == "last":
        return newest_last_checkpoint(outputs_root)
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise MissingFileError(f"resume={resume}: no such checkpoint file")
    return path


def resolve_ckpt(ckpt: str | None, outputs_root: str | Path = "outputs") -> Path:
    """ckpt=null or 'last' -> the newest last.ckpt under outputs; else that file (must exist)."""
    if ckpt in (None, "", "last"):
        try:
            return newest_last_checkpoint(outputs_root)
        except FileNotFoundError:
            raise MissingFileError(
                f"ckpt=last: no {outputs_root}/**/checkpoints/last.ckpt under {Path.cwd()}; pass ckpt=<file>"
            ) from None
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise MissingFileError(f"ckpt={ckpt}: no such checkpoint file")
    return path


def run_dir_for_resume(resume: str | None, default: str) -> str:
    """Run folder for Hydra: a resumed run continues in the folder of its checkpoint."""
    ckpt = resolve_resume(resume)
    if ckpt is None:
        return default
    return str(ckpt.resolve().parent.parent if ckpt.parent.name == "checkpoints" else ckpt.resolve().parent)


# Overrides of the original run that a resume must not repeat: where it ran and what it resumed.
_NOT_REPLAYED = ("resume", "run_dir", "hydra.")


def replay_overrides(args: list[str]) -> list[str]:
    """For a resume, the original run's command-line overrides followed by `args` (later wins).

    `make resume` must continue the run that was started, on its data and model, not on the
    defaults: Hydra saved that run's overrides in <run>/.hydra/overrides.yaml. Anything given
    again on the command line overrides the saved value. Without resume= nothing changes.
    """
    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    ckpt = resolve_resume(resume)
    if ckpt is None:
        return args
    saved = Path(run_dir_for_resume(str(ckpt), "")) / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return args
    previous = [str(o) for o in OmegaConf.load(saved)]
    keep = [o for o in previous if not o.lstrip("+~").startswith(_NOT_REPLAYED)]
    return normalize_overrides(keep) + args


def insert_overrides(args: list[str], extra: list[str]) -> list[str]:
    """`args` with `extra` overrides put next to the others: Hydra rejects them on both sides of a flag such as -m."""
    at = next((k for k, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return args[:at] + extra + args[at:]


def slurm_gpus(accelerator, devices) -> int:
    """GPUs per node to ask SLURM for: trainer.devices when training on GPUs, else 0."""
    if str(accelerator).lower() not in ("gpu", "cuda"):
        return 0
    if isinstance(devices, int) and devices > 0:
        return devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices)
    raise UsageError(f"trainer.devices={devices}: give the number of GPUs per node for SLURM")


def slurm_run_dir(default: str) -> str:
    """outputs/slurm/<job id> inside a SLURM batch job, else `default` (the dated folder).

    The job id survives a requeue, and every task of the job sees the same one, so all ranks
    and a requeued job write to one folder (a time stamp would differ). Interactive allocations
    (job name bash or interactive) keep the dated folders.
    """
    job = slurm_job_id()
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return default
    return f"outputs/slurm/{job}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("resume_dir"):
        OmegaConf.register_new_resolver("resume_dir", run_dir_for_resume)
    if not OmegaConf.has_resolver("slurm_run_dir"):
        OmegaConf.register_new_resolver("slurm_run_dir", slurm_run_dir)
    if not OmegaConf.has_resolver("slurm_gpus"):
        OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus)
