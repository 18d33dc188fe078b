"""What a SLURM job knows about itself, from the environment SLURM gives its tasks."""

from __future__ import annotations

import os


def slurm_job_id() -> str | None:
    """<array job>_<task> for an array task, else the job id; None outside a SLURM job.

    The id `scontrol requeue` takes, and the same for every task of the job and across a requeue.
    """
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")
