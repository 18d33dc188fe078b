"""A real one-node SLURM cluster for the sweep tests: the `slurm_cluster` fixture and job helpers.

    def test_x(slurm_cluster, tmp_path):
        ...submit (e.g. python -m braingan.train -m hydra/launcher=slurm ... hydra.sweep.dir=tmp_path/sweep)
        slurm_cluster.wait_for_jobs(tmp_path / "sweep", timeout=600)

The fixture uses the cluster that answers `sinfo`. Without one it starts scripts/slurm-local.sh
when it may (root, and BRAINGAN_START_SLURM=1 or CI=true) and stops those daemons at the end of
the session; otherwise the test skips. With BRAINGAN_REQUIRE_SLURM=1 (CI) a missing cluster fails.
The helpers are plain functions too, for tests that do not need the fixture object.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
_JOB_DIR = re.compile(r"\d+(_\d+)?")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def sinfo_answers(timeout: float = 15) -> bool:
    """A SLURM controller answers `sinfo`."""
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def default_partition() -> str | None:
    """The partition sbatch uses without -p (sinfo marks it with '*')."""
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=15).stdout
    names = [p.strip() for p in out.split()]
    return next((p[:-1] for p in names if p.endswith("*")), names[0] if names else None)


def submitit_job_ids(sweep_dir: str | os.PathLike) -> list[str]:
    """The SLURM job ids that submitit wrote folders for: <sweep_dir>/.submitit/<id> (array: <id>, <id>_<task>)."""
    folder = Path(sweep_dir) / ".submitit"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _JOB_DIR.fullmatch(p.name))


def queued_jobs(job_ids: list[str] | None = None) -> dict[str, str]:
    """job id -> state of the jobs squeue lists (array tasks one by one, '<array>_<task>').

    With job_ids: only those, where an array job id '<array>' stands for all of its tasks.
    """
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    states = dict(line.strip().split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    if job_ids is None:
        return states
    wanted = set(job_ids)
    return {j: s for j, s in states.items() if j in wanted or j.split("_")[0] in wanted}


def wait_for_jobs(
    sweep_dir: str | os.PathLike | None = None,  # a sweep folder: wait for the jobs submitit wrote there
    job_ids: list[str] = (),  # and/or these job ids ('<array>' covers all its tasks)
    timeout: float = 600,  # seconds until TimeoutError
    poll: float = 1.0,  # seconds between squeue calls
    min_jobs: int = 1,  # wait until at least this many job ids are known (submission may lag)
) -> list[str]:
    """Waits until none of the sweep's (or the given) jobs is queued or running; returns the job ids.

    Pending jobs count as unfinished, so a job requeued after preemption is waited for too.
    Jobs that leave the queue are not judged here: read their output files.
    """
    deadline = time.monotonic() + timeout
    while True:
        ids = sorted(set(job_ids) | set(submitit_job_ids(sweep_dir) if sweep_dir is not None else []))
        left = queued_jobs(ids) if ids else {}
        if len(ids) >= min_jobs and not left:
            return ids
        if time.monotonic() > deadline:
            what = f"jobs {ids} still queued: {left}" if ids else f"no job appeared under {sweep_dir}/.submitit"
            raise TimeoutError(f"SLURM: {what} after {timeout:.0f} s")
        time.sleep(poll)


def signal_job(job_id: str, signal: str = "USR2") -> None:
    """Sends the job's steps a signal, as SLURM does before a time limit (submitit's --signal is USR2)."""
    subprocess.run(["scancel", f"--signal={signal}", job_id], check=True, capture_output=True, timeout=30)


@dataclass
class SlurmCluster:
    started_here: bool  # this session started the daemons (and stops them at its end)
    partition: str | None  # the default partition

    wait_for_jobs = staticmethod(wait_for_jobs)
    queued_jobs = staticmethod(queued_jobs)
    submitit_job_ids = staticmethod(submitit_job_ids)
    signal_job = staticmethod(signal_job)


def _missing(reason: str):
    if _flag("BRAINGAN_REQUIRE_SLURM"):
        pytest.fail(f"BRAINGAN_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A SLURM cluster that answers sinfo (see the module docstring for when it is started or skipped)."""
    if sinfo_answers():
        yield SlurmCluster(started_here=False, partition=default_partition())
        return
    if not (_flag("BRAINGAN_START_SLURM") or _flag("CI")):
        _missing(
            "no SLURM cluster answers sinfo; start one with `sudo bash scripts/slurm-local.sh start` "
            "or set BRAINGAN_START_SLURM=1 (as root) to let the tests start it"
        )
    if os.geteuid() != 0:
        _missing("no SLURM cluster answers sinfo, and starting scripts/slurm-local.sh needs root")
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not sinfo_answers():
        _missing(f"scripts/slurm-local.sh start failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    try:
        yield SlurmCluster(started_here=True, partition=default_partition())
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)
