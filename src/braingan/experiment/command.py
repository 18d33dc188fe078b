"""The command line of a run, before Hydra composes it, and the resolvers the configs use.

`train_arguments` turns what the user typed into what Hydra composes: a resume's replayed
overrides, `resume=last` pinned to a file, the CPU preset when no GPU is visible (with one
warning line when nvidia-smi sees a GPU that torch cannot use), and the deferred write of
<run>/.hydra (train() writes it once the command is known to run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from omegaconf import OmegaConf

from ..rundir import slurm_run
from ..utils.errors import UsageError
from ..utils.gpu import gpu_unusable_reason
from ..utils.slurm import slurm_job_id
from .resume import outputs_of, replay_overrides, resolve_resume, run_dir_for_resume

# main() turns Hydra's own early write of <run>/.hydra off with this override; train() writes the
# same three files once the command is known to run (`experiment.run.save_run_files`).
DEFER_HYDRA_FILES = "hydra.output_subdir=null"
CPU_PRESET = "experiment=cpu"


def _names(args: list[str]) -> list[str]:
    return [a.split("=")[0].lstrip("+~") for a in args]


def insert_overrides(args: list[str], extra: list[str]) -> list[str]:
    """`args` with `extra` overrides put next to the others: Hydra rejects them on both sides of a flag such as -m."""
    at = next((k for k, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return args[:at] + extra + args[at:]


def runs_here(args: list[str]) -> bool:
    """Whether the command's jobs run on this machine (not through a cluster launcher such as hydra/launcher=slurm)."""
    launcher = next((a.split("=", 1)[1] for a in args if a.split("=")[0].lstrip("+~") == "hydra/launcher"), None)
    return launcher in (None, "basic")


def default_preset(args: list[str], cuda: bool) -> str | None:
    """experiment=cpu when no CUDA device is visible, unless the command chose the hardware or a preset itself.

    A sweep submitted through a cluster launcher (hydra/launcher=slurm) runs on compute nodes,
    not on this login node: it keeps the config's default (trainer=gpu) instead of guessing from here.
    """
    names = _names(args)
    if cuda or "trainer" in names or "experiment" in names or not runs_here(args):
        return None
    return CPU_PRESET


def cpu_preset_warning(reason: Callable[[], str | None] = gpu_unusable_reason) -> str | None:
    """The line to print when the CPU preset is chosen on a machine whose GPU torch cannot use, else None."""
    why = reason()
    if why is None:
        return None
    return f"{why}; going on with the CPU preset ({CPU_PRESET}; pass it yourself to silence this line)"


def train_arguments(
    args: list[str], cuda: bool, local_rank: int = 0, warn: Callable[[str], None] | None = None
) -> list[str]:
    """The overrides `python -m braingan.train` hands to Hydra for the command line `args`.

    `warn` receives `cpu_preset_warning()` when the CPU preset is chosen and nvidia-smi sees a GPU
    that torch cannot use (rank 0 only).
    """
    # resume=last and init=last, pinned now: ranks that Lightning starts later re-read this command
    # line (and the replay below then reads that file instead of searching outputs/ a second time);
    # the run's saved overrides name the file, so a requeued job or a resume starts from the same one.
    pinned = {}
    for key in ("resume", "init"):
        if f"{key}=last" in args:
            pinned[f"{key}=last"] = (
                f"{key}={cast(Path, resolve_resume('last', outputs_of(args), setting=key)).resolve()}"
            )
    args = [pinned.get(a, a) for a in args]
    args = replay_overrides(args)
    extra = []
    preset = default_preset(args, cuda)
    if preset is not None:
        extra.append(preset)
        if preset == CPU_PRESET and warn is not None and local_rank == 0:
            note = cpu_preset_warning()
            if note is not None:
                warn(note)
    if local_rank > 0 and DEFER_HYDRA_FILES in args:
        # A rank that Lightning's launcher started: rank 0 alone writes the run's log file.
        extra.append("hydra/job_logging=stdout")
    if "hydra.output_subdir" not in _names(args) and not {"-m", "--multirun"} & set(args):
        # train() writes <run>/.hydra once the command is known to run. A sweep's jobs each start in
        # a new folder, where Hydra writes them at once (make sweep-report lists a refused job too).
        extra.append(DEFER_HYDRA_FILES)
    return insert_overrides(args, extra)


def tool_arguments(args: list[str], cuda: bool, cpu_defaults: dict[str, str]) -> list[str]:
    """make bench / make guard: the command line plus, without CUDA, trainer=cpu and the tool's small `cpu_defaults`
    (command-line choices win)."""
    names = set(_names([a for a in args if "=" in a]))
    cpu = any(a.lstrip("+~") == "trainer=cpu" for a in args) or (not cuda and "trainer" not in names)
    extra = []
    if cpu and "trainer" not in names:
        extra.append("trainer=cpu")
    if cpu:
        extra += [f"{k}={v}" for k, v in cpu_defaults.items() if k not in names]
    return insert_overrides(args, extra)


def slurm_gpus(accelerator, devices) -> int:
    """GPUs per node to ask SLURM for: trainer.devices when training on GPUs, else 0."""
    if str(accelerator).lower() not in ("gpu", "cuda"):
        return 0
    if isinstance(devices, int) and devices > 0:
        return devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices)
    raise UsageError(f"trainer.devices={devices}: give the number of GPUs per node for SLURM")


def slurm_run_dir(outputs: str, default: str) -> str:
    """<outputs>/slurm/<job id> inside a SLURM batch job, else `default` (the dated folder).

    The job id survives a requeue, and every task of the job sees the same one, so all ranks
    and a requeued job write to one folder (a time stamp would differ). Interactive allocations
    (job name bash or interactive) keep the dated folders.
    """
    job = slurm_job_id()
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return default
    return str(slurm_run(job, outputs))


def register_resolvers() -> None:
    """${resume_dir:...}, ${slurm_run_dir:...} and ${slurm_gpus:...} of conf/train.yaml and the SLURM launcher."""
    if not OmegaConf.has_resolver("resume_dir"):
        OmegaConf.register_new_resolver("resume_dir", run_dir_for_resume)
    if not OmegaConf.has_resolver("slurm_run_dir"):
        OmegaConf.register_new_resolver("slurm_run_dir", slurm_run_dir)
    if not OmegaConf.has_resolver("slurm_gpus"):
        OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus)
