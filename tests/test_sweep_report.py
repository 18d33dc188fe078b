"""braingan.sweep_report on fabricated run folders with real files (event files, .hydra/, pickles)."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from braingan import sweep_report as sr
from braingan.reporting.tables import cell, fixed_width
from braingan.rundir import sweep_runs
from helpers.runs import REPO


def make_run(
    sweep: Path,
    name: str,
    overrides: list[str],
    kimg_target: float = 0.5,
    cur_nimg: int | None = None,
    scalars: dict | None = None,
    job: str | None = None,
    fid_eval: float | None = None,
) -> Path:
    """A run folder as a sweep job leaves it: .hydra/, optional last.ckpt, tb/ events, eval/metrics.json."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"kimg": kimg_target, "run_dir": "${hydra:runtime.output_dir}"}),
        run / ".hydra" / "config.yaml",
    )
    OmegaConf.save(
        OmegaConf.create({"hydra": {"job": {"id": job or "???", "num": int(name)}}}), run / ".hydra" / "hydra.yaml"
    )
    if cur_nimg is not None:
        (run / "checkpoints").mkdir()
        torch.save(
            {"braingan": {"cur_nimg": cur_nimg}, "state_dict": {}, "hyper_parameters": {}},
            run / "checkpoints" / "last.ckpt",
        )
    if scalars:
        writer = SummaryWriter(str(run / "tb"))
        for tag, points in scalars.items():
            for step, value in points:
                writer.add_scalar(tag, value, step)
        writer.close()
    if fid_eval is not None:
        (run / "eval").mkdir()
        (run / "eval" / "metrics.json").write_text(
            json.dumps({"metrics": {"fid": fid_eval}, "settings": {"kimg": 0.5}})
        )
    return run


def submitit_log(sweep: Path, job: str, *messages: str) -> Path:
    folder = sweep / ".submitit" / job
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job}_0_log.out"
    lines = [f"submitit INFO (2026-01-01 00:00:0{i},000) - {m}" for i, m in enumerate(messages)]
    path.write_text("\n".join(["Starting with JobEnvironment(job_id=...)"] + lines) + "\n")
    return folder


def test_varying_keys_finds_the_swept_overrides():
    runs = [
        ["trainer=cpu", "model.r1_gamma=0.5", "resolution=32"],
        ["trainer=cpu", "model.r1_gamma=1", "resolution=32"],
        ["trainer=cpu", "model.r1_gamma=2", "resolution=32", "seed=3"],
    ]
    assert sr.varying_keys(runs) == ["model.r1_gamma", "seed"]  # seed: only one run sets it
    assert sr.varying_keys(runs[:1]) == []
    assert sr.split_override("a.b=1=2") == ("a.b", "1=2")


@pytest.mark.parametrize(
    "kimg, target, outcome, queue, expected",
    [
        (0.5, 0.5, None, None, "finished"),
        (0.5, 0.5, "exception", "RUNNING", "finished"),  # kimg decides first
        (0.2, 0.5, "started", "RUNNING", "running"),
        (None, 0.5, None, "PENDING", "pending"),
        (0.2, 0.5, "signalled", "PENDING", "requeued"),
        (0.2, 0.5, "exception", None, "failed"),
        (0.2, 0.5, "signalled", None, "preempted"),
        (0.2, 0.5, "started", None, "stopped"),
        (0.2, 0.5, "completed", None, "stopped"),  # e.g. trainer.max_time ended it early
        (None, None, None, None, "stopped"),
    ],
)
def test_run_status(kimg, target, outcome, queue, expected):
    assert sr.run_status(kimg, target, outcome, queue) == expected


def test_log_outcome_reads_the_last_submitit_event():
    assert sr.log_outcome("") is None
    started = "submitit INFO (t) - Starting with JobEnvironment(job_id=1_0)"
    signalled = "submitit WARNING (t) - Caught signal SIGUSR2 on vm: this job is preempted."
    done = "submitit INFO (t) - Job completed successfully"
    assert sr.log_outcome("\n".join([started, signalled])) == "signalled"
    assert sr.log_outcome("\n".join([started, signalled, started])) == "started"  # the requeued attempt runs
    assert sr.log_outcome("\n".join([started, done, "[2026][submitit][INFO] - Caught signal"])) == "completed"


def test_report_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    common = ["trainer=cpu", "model=tiny", "kimg=0.5"]
    losses = {
        "Loss/G": [(100, 2.0), (500, 1.25)],
        "Loss/D": [(100, 0.5), (500, 0.75)],
        "Progress/kimg": [(100, 0.1), (500, 0.5)],
    }
    make_run(
        sweep,
        "0",
        common + ["model.r1_gamma=0.5"],
        cur_nimg=500,
        job="987654_0",
        fid_eval=12.5,
        scalars={**losses, "Metrics/fid5k_train": [(250, 80.0), (500, 40.0)]},
    )
    # No checkpoint yet: kimg from TensorBoard; the job raised (Hydra's JobReturn in submitit's result pickle).
    make_run(
        sweep,
        "1",
        common + ["model.r1_gamma=1"],
        job="987654_1",
        scalars={"Loss/G": [(100, 3.0)], "Progress/kimg": [(100, 0.1)]},
    )
    folder = submitit_log(sweep, "987654_1", "Job completed successfully")
    failed = JobReturn()
    failed.status, failed.return_value = JobStatus.FAILED, ValueError("loss is NaN")
    with open(folder / "987654_1_0_result.pkl", "wb") as f:
        pickle.dump(("success", failed), f)
    # Preempted and gone from the queue.
    make_run(sweep, "2", common + ["model.r1_gamma=2"], cur_nimg=200, job="987654_2")
    submitit_log(
        sweep,
        "987654_2",
        "Caught signal SIGUSR2 on vm: this job is timed-out.",
        "Exiting gracefully after preemption/timeout.",
    )
    # A run folder under another level (10 sorts after 2) without any SLURM trace.
    make_run(sweep, "10", common + ["model.r1_gamma=4"])

    assert [p.name for p in sweep_runs(sweep)] == ["0", "1", "2", "10"]
    keys, rows = sr.collect(sweep)
    assert keys == ["model.r1_gamma"]
    by_run = {r["run"]: r for r in rows}
    r0 = by_run["0"]
    assert (r0["model.r1_gamma"], r0["kimg"], r0["target"], r0["status"]) == ("0.5", 0.5, 0.5, "finished")
    assert (r0["loss_G"], r0["loss_D"], r0["fid_tb"], r0["fid_eval"]) == (1.25, 0.75, 40.0, 12.5)
    assert by_run["1"]["kimg"] == pytest.approx(0.1)  # from Progress/kimg
    assert (by_run["1"]["status"], by_run["1"]["error"]) == ("failed", "ValueError: loss is NaN")
    assert by_run["1"]["loss_D"] is None
    assert (by_run["2"]["kimg"], by_run["2"]["status"]) == (0.2, "preempted")
    assert (by_run["10"]["status"], by_run["10"]["job"], by_run["10"]["loss_G"]) == ("stopped", "", None)

    table, out = sr.sweep_report(sweep)
    assert out == sweep / "sweep_report.csv"
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["run", "model.r1_gamma", "kimg"]
    assert lines[2].split()[:10] == [
        "0",
        "0.5",
        "0.500",
        "0.500",
        "1.250",
        "0.750",
        "40.000",
        "12.500",
        "finished",
        "987654_0",
    ]
    assert "run 1 failed: ValueError: loss is NaN" in table
    with open(out, newline="") as f:
        saved = list(csv.DictReader(f))
    assert [(r["run"], r["model.r1_gamma"], r["status"]) for r in saved] == [
        ("0", "0.5", "finished"),
        ("1", "1", "failed"),
        ("2", "2", "preempted"),
        ("10", "4", "stopped"),
    ]
    assert saved[1]["fid_tb"] == "" and saved[0]["overrides"] == "trainer=cpu model=tiny kimg=0.5 model.r1_gamma=0.5"


def test_cells_and_fixed_width_columns():
    assert [cell(None), cell(0.5), cell(12345.678), cell(float("nan")), cell(3), cell("x"), cell(0.5, ".4g")] == [
        "-",
        "0.500",
        "1.235e+04",
        "nan",
        "3",
        "x",
        "0.5",
    ]
    lines = fixed_width(["run", "kimg", "status"], [["0", "0.500", "finished"], ["10", "12.000", "-"]], right={"kimg"})
    assert lines == ["run    kimg  status", "0     0.500  finished", "10   12.000  -"]


def report(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "braingan.sweep_report", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("sweep_report: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


@pytest.mark.slow
def test_cli_defaults_to_the_newest_sweep(tmp_path):
    for stamp, gamma in (("2026-01-01/09-00-00", "1"), ("2026-01-02/08-00-00", "2")):
        make_run(tmp_path / "outputs" / "multirun" / stamp, "0", [f"model.r1_gamma={gamma}"], cur_nimg=100)
    proc = report([], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2026-01-02/08-00-00" in proc.stdout and "model.r1_gamma=2" in proc.stdout
    assert (tmp_path / "outputs" / "multirun" / "2026-01-02" / "08-00-00" / "sweep_report.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # a tool: no .hydra/, no log file
    # The sweep as a bare first argument (make sweep-report DIR=...) or as sweep=, the CSV where csv= says.
    older = tmp_path / "outputs" / "multirun" / "2026-01-01" / "09-00-00"
    proc = report([str(older), f"csv={tmp_path / 'older.csv'}"], REPO)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"sweep {older}" in proc.stdout
        and (tmp_path / "older.csv").is_file()
        and not (older / "sweep_report.csv").exists()
    )
    proc = report([f"sweep={older}"], REPO)
    assert proc.returncode == 0 and (older / "sweep_report.csv").is_file(), proc.stderr


@pytest.mark.slow
def test_cli_bad_arguments_are_one_line_exit_2(tmp_path):
    assert one_line_exit_2(report([str(tmp_path / "nothing")], REPO)) == (
        f"sweep_report: sweep={tmp_path / 'nothing'} is not a folder; pass a sweep folder (outputs/multirun/<date>/<time>)"
    )
    assert "no run folders" in one_line_exit_2(report([str(tmp_path)], REPO))
    assert "swep: no such setting; did you mean sweep?" in one_line_exit_2(report(["swep=x"], REPO))
    assert "unrecognized arguments: --csv" in one_line_exit_2(report(["--csv", "x.csv"], REPO))
    assert "no sweep folder under" in one_line_exit_2(report([], tmp_path))
