"""Entry point: `python -m braingan.sweep_report [SWEEP_DIR | sweep=SWEEP_DIR] [csv=PATH]` (`make sweep-report`).

One table over the runs of a Hydra multirun sweep (e.g. `make sweep`): every folder below
SWEEP_DIR that holds `.hydra/overrides.yaml` is a run (`rundir.sweep_runs`). Columns:

    run           the run folder, relative to the sweep folder (Hydra's job number)
    <key>...      one column per override that differs between the runs
    kimg          training time reached: checkpoints/last.ckpt, else the last Progress/kimg in tb/
    target        the run's configured `kimg` (.hydra/config.yaml)
    loss_G loss_D the last logged Loss/G and Loss/D (TensorBoard, tb/)
    fid_tb        the last logged Metrics/fid* (schedule.fid_kimg; small-N FID, compare only with itself)
    fid_eval      FID of `make eval` (<run>/eval/metrics.json)
    status        see `run_status`
    overrides     the run's full command-line overrides

The table is printed and written to SWEEP_DIR/sweep_report.csv (or csv=). Without SWEEP_DIR: the
newest sweep under outputs/multirun/<date>/<time>. Hydra composes conf/sweep_report.yaml; a bare
first argument is the sweep folder (`make sweep-report DIR=...` passes it so). For SLURM sweeps the status reads `squeue` and the
submitit files of the run's job (<sweep>/.submitit/<job id>/: log and result pickle). The
result pickle is unpickled, so only report on sweeps you (or your jobs) wrote.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .reporting.tables import cell, fixed_width
from .reporting.tensorboard import event_dir, read_scalars
from .rundir import RunDir, newest_sweep, sweep_runs
from .utils.errors import MissingFileError
from .utils.io import atomic_path

CSV_NAME = "sweep_report.csv"
QUEUE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
QUEUE_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}


# ---------------------------------------------------------------- overrides


def read_overrides(run: Path) -> list[str]:
    """The run's command-line overrides, as Hydra saved them."""
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(RunDir(run).overrides)]


def split_override(override: str) -> tuple[str, str]:
    """'model.r1_gamma=0.5' -> ('model.r1_gamma', '0.5'); '~key' -> ('~key', '')."""
    key, _, value = override.partition("=")
    return key, value


def varying_keys(overrides: list[list[str]]) -> list[str]:
    """Override keys whose value differs between the runs (or that only some runs have), in first-seen order."""
    per_run = [dict(split_override(o) for o in run) for run in overrides]
    keys: list[str] = []
    for run in per_run:
        keys += [k for k in run if k not in keys]
    return [k for k in keys if len({run.get(k) for run in per_run}) > 1]


# ---------------------------------------------------------------- what a run reached


def checkpoint_kimg(run: Path) -> float | None:
    """kimg stored in <run>/checkpoints/last.ckpt; None when there is none (or it cannot be read)."""
    from .checkpoint import read_info

    path = RunDir(run).last
    if not path.is_file():
        return None
    try:
        return read_info(path).kimg
    except Exception:  # a foreign or damaged file: report what TensorBoard knows instead
        return None


def tb_scalars(run: Path) -> dict:
    """tag -> (steps, values) from <run>/tb (reporting.tensorboard, as `make plots` reads them); {} without event files."""
    try:
        return read_scalars(event_dir(run))
    except MissingFileError:
        return {}


def last_value(scalars: dict, tag: str) -> float | None:
    if tag not in scalars or len(scalars[tag][1]) == 0:
        return None
    return float(scalars[tag][1][-1])


def last_fid(scalars: dict) -> float | None:
    """The most recently logged value over all Metrics/fid* tags."""
    latest = None  # (step, tag, value)
    for tag, (steps, values) in scalars.items():
        if tag.startswith("Metrics/fid") and len(steps):
            candidate = (int(steps[-1]), tag, float(values[-1]))
            latest = candidate if latest is None or candidate[:2] > latest[:2] else latest
    return None if latest is None else latest[2]


def eval_fid(run: Path) -> float | None:
    """FID in <run>/eval/metrics.json (written by `make eval`)."""
    path = RunDir(run).metrics
    try:
        return float(json.loads(path.read_text())["metrics"]["fid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def target_kimg(run: Path) -> float | None:
    """The configured training length (`kimg` in .hydra/config.yaml)."""
    from omegaconf import OmegaConf

    try:
        return float(cast(DictConfig, OmegaConf.load(RunDir(run).config))["kimg"])
    except Exception:
        return None


# ---------------------------------------------------------------- SLURM / submitit state


def job_id(run: Path) -> str | None:
    """The SLURM job id Hydra's submitit launcher stored in .hydra/hydra.yaml (e.g. '1234_0'); None otherwise."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.load(RunDir(run).hydra_config).hydra.job.get("id")
    except Exception:
        return None
    value = None if value is None else str(value)
    return value if value and re.fullmatch(r"\d+(_\d+)?", value) else None


def submitit_files(sweep: Path, job: str) -> list[Path]:
    """The submitit log and result files of one job anywhere below the sweep folder."""
    return sorted(p for p in sweep.glob(f"**/{job}_*") if p.name.endswith(("_log.out", "_log.err", "_result.pkl")))


# Lines submitit logs in a job's .out file, in the order they happen within one attempt.
_LOG_EVENTS = (
    ("Starting with JobEnvironment", "started"),
    ("Caught signal", "signalled"),
    ("Exiting gracefully after preemption/timeout", "signalled"),
    ("Job not requeued because", "exception"),
    ("Submitted job triggered an exception", "exception"),
    ("Job completed successfully", "completed"),
)


def log_outcome(text: str) -> str | None:
    """The last event of the newest attempt in a submitit log: started | signalled | exception | completed."""
    outcome = None
    for line in text.splitlines():
        if not line.startswith("submitit "):  # submitit's own handler; Hydra echoes the lines again
            continue
        for needle, event in _LOG_EVENTS:
            if needle in line:
                outcome = event
    return outcome


def result_outcome(path: Path) -> tuple[str, str] | None:
    """(completed | exception, message) from a submitit result pickle; None when unreadable.

    A Hydra job that raised is still a submitit success: the JobReturn inside carries the error.
    """
    try:
        with open(path, "rb") as f:
            kind, value = pickle.load(f)
    except Exception:
        return None
    if kind != "success":
        lines = str(value).strip().splitlines()
        return "exception", lines[-1] if lines else str(kind)
    status = getattr(getattr(value, "status", None), "name", None)
    if status == "FAILED":
        error = getattr(value, "_return_value", None)
        return "exception", f"{type(error).__name__}: {error}" if error is not None else "the job raised"
    return "completed", ""


def job_outcome(sweep: Path, job: str | None) -> tuple[str | None, str]:
    """What submitit recorded for a job: (started | signalled | exception | completed | None, message)."""
    if job is None:
        return None, ""
    files = submitit_files(sweep, job)
    outcome = None
    for log in (p for p in files if p.name.endswith("_log.out")):
        outcome = log_outcome(log.read_text(errors="replace")) or outcome
    results = [p for p in files if p.name.endswith("_result.pkl")]
    if results and outcome in (None, "completed", "exception"):  # the pickle of an older attempt says nothing now
        found = result_outcome(results[0])
        if found is not None:
            return found
    return outcome, ""


def queue_states(jobs: list[str]) -> dict[str, str]:
    """job id -> SLURM state (RUNNING, PENDING, ...) for those of `jobs` that squeue lists; {} without squeue."""
    if not jobs or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(jobs)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition("|")
        if job in jobs:
            states[job] = state
    return states


def run_status(
    kimg: float | None,  # training time reached
    target: float | None,  # configured kimg
    outcome: str | None = None,  # job_outcome(): started | signalled | exception | completed | None
    queue_state: str | None = None,  # squeue's state of the job; None = not queued (or no SLURM)
) -> str:
    """finished   kimg reached the configured kimg
    running    SLURM runs the job now
    pending    queued, not started yet; `requeued` when it was preempted or hit its time limit before
    failed     the job raised (submitit's result or log says so)
    preempted  the job got the preemption/time-limit signal and is no longer queued
    stopped    anything else short of the target: cancelled, killed, out of memory, trainer.max_time,
               or a run that was not launched through submitit and did not finish
    """
    if kimg is not None and target is not None and kimg >= target - 1e-9:
        return "finished"
    if queue_state in QUEUE_RUNNING:
        return "running"
    if queue_state in QUEUE_WAITING:
        return "requeued" if outcome == "signalled" else "pending"
    if outcome == "exception":
        return "failed"
    if outcome == "signalled":
        return "preempted"
    return "stopped"


# ---------------------------------------------------------------- the table


def collect(sweep: Path) -> tuple[list[str], list[dict]]:
    """(varying override keys, one row dict per run)."""
    runs = sweep_runs(sweep)
    if not runs:
        raise MissingFileError(
            f"sweep={sweep}: no run folders (<n>/.hydra/overrides.yaml) below it; pass a sweep folder "
            "(outputs/multirun/<date>/<time>)"
        )
    overrides = [read_overrides(run) for run in runs]
    keys = varying_keys(overrides)
    jobs = [job_id(run) for run in runs]
    queue = queue_states([j for j in jobs if j])
    rows = []
    for run, over, job in zip(runs, overrides, jobs):
        scalars = tb_scalars(run)
        kimg = checkpoint_kimg(run)
        if kimg is None:
            kimg = last_value(scalars, "Progress/kimg")
        target = target_kimg(run)
        outcome, message = job_outcome(sweep, job)
        values = dict(split_override(o) for o in over)
        row: dict[str, Any] = {"run": run.relative_to(sweep).as_posix()}
        row.update({k: values.get(k, "") for k in keys})
        row.update(
            {
                "kimg": kimg,
                "target": target,
                "loss_G": last_value(scalars, "Loss/G"),
                "loss_D": last_value(scalars, "Loss/D"),
                "fid_tb": last_fid(scalars),
                "fid_eval": eval_fid(run),
                "status": run_status(kimg, target, outcome, queue.get(job) if job else None),
                "job": job or "",
                "error": message,
                "overrides": " ".join(over),
            }
        )
        rows.append(row)
    return keys, rows


TABLE_COLUMNS = ("kimg", "target", "loss_G", "loss_D", "fid_tb", "fid_eval", "status", "job")
NUMERIC = {"kimg", "target", "loss_G", "loss_D", "fid_tb", "fid_eval"}


def format_table(keys: list[str], rows: list[dict]) -> str:
    """The printed table: run, varying overrides, progress, losses, FID, status; full overrides last."""
    columns = ["run", *keys, *TABLE_COLUMNS, "overrides"]
    lines = fixed_width(columns, [[cell(row.get(c)) for c in columns] for row in rows], right=NUMERIC)
    errors = [f"run {row['run']} failed: {row['error']}" for row in rows if row.get("error")]
    return "\n".join(lines + errors)


def write_csv(path: Path, keys: list[str], rows: list[dict]) -> Path:
    columns = ["run", *keys, *TABLE_COLUMNS, "error", "overrides"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return path


def sweep_report(sweep: str | Path | None = None, csv_path: str | Path | None = None) -> tuple[str, Path]:
    """Builds the table of a sweep folder (None = the newest under outputs/multirun), writes the CSV."""
    sweep = newest_sweep() if sweep in (None, "", "last") else Path(str(sweep)).expanduser()
    if not sweep.is_dir():
        raise MissingFileError(f"sweep={sweep} is not a folder; pass a sweep folder (outputs/multirun/<date>/<time>)")
    keys, rows = collect(sweep)
    out = write_csv(Path(str(csv_path)).expanduser() if csv_path not in (None, "") else sweep / CSV_NAME, keys, rows)
    return f"sweep {sweep}\n" + format_table(keys, rows), out


def bare_sweep_argument(args: Sequence[str]) -> list[str]:
    """A first argument that is neither an override (key=value) nor a flag is the sweep folder: DIR -> sweep='DIR'
    (quoted, so that Hydra reads any path as one string)."""
    args = list(args)
    if args and "=" not in args[0] and not args[0].startswith("-"):
        args[0] = "sweep='" + args[0].replace("'", "\\'") + "'"
    return args


@hydra.main(config_path=str(CONF_DIR), config_name="sweep_report", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("sweep_report"):
        table, out = sweep_report(cfg.sweep, cfg.csv)
    print(table)
    print(f"wrote {out}")


def main() -> None:
    cli.hydra_entry("sweep_report", "sweep_report", _hydra_main, bare_sweep_argument(sys.argv[1:]))


if __name__ == "__main__":
    main()
