"""Moved: the command line to experiment/command.py, the resume policy to experiment/resume.py, the
config folder to confdir.py. These names stay here only until the last entry point has switched."""
from __future__ import annotations

from .confdir import CONF_DIR
from .experiment.command import insert_overrides, register_resolvers, slurm_gpus, slurm_run_dir
from .experiment.resume import replay_overrides, resolve_ckpt, resolve_resume, run_dir_for_resume

__all__ = ["CONF_DIR", "insert_overrides", "register_resolvers", "replay_overrides", "resolve_ckpt",
           "resolve_resume", "run_dir_for_resume", "slurm_gpus", "slurm_run_dir"]
