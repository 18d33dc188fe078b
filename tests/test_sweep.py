"""SLURM sweeps: `make sweep` (Hydra's submitit launcher, conf/hydra/launcher/slurm.yaml) on a real
one-node cluster (tests/helpers/slurm.py), then `make sweep-report` on its runs."""

from __future__ import annotations

import csv
import os
import re
import subprocess

import pytest
from omegaconf import OmegaConf

from braingan.checkpoint import load_checkpoint
from helpers.runs import REPO, tiny_overrides


def _compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from braingan.confdir import CONF_DIR
    from braingan.experiment.command import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    "overrides, nodes, tasks, gpus",
    [
        (["trainer=cpu"], 1, 1, 0),
        (["trainer=gpu"], 1, 1, 1),
        (["trainer=gpu", "trainer.devices=4", "trainer.num_nodes=2"], 2, 4, 4),
    ],
)
def test_slurm_launcher_follows_the_trainer(overrides, nodes, tasks, gpus):
    """One SLURM task per GPU on each node; GPUs requested only for trainer.accelerator=gpu."""
    launcher = _compose_with_hydra(["hydra/launcher=slurm", *overrides]).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (nodes, tasks, gpus)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # time-limit requeues allowed
    assert OmegaConf.to_container(launcher, resolve=False)["submitit_folder"].startswith("${hydra.sweep.dir}/")


@pytest.mark.slow
def test_make_sweep_runs_one_slurm_job_per_point(tmp_path, demo_root, slurm_cluster):
    """A two-point r1_gamma sweep through SLURM: two run folders, each trained, then the report."""
    sweep = tmp_path / "sweep"
    env_cache = tmp_path / "env-cache"
    extra = {
        "model.r1_gamma": "0.5,1",
        "schedule.log_kimg": 0.008,
        "schedule.image_kimg": 0.016,
        "schedule.last_kimg": 0.016,  # last.ckpt at 0.016 kimg (mid-run) and at the end
        "schedule.snapshot_kimg": 0.032,
        "hydra.sweep.dir": sweep,
        "hydra.launcher.partition": slurm_cluster.partition,
        "hydra.launcher.cpus_per_task": 1,  # the two array tasks run side by side on 2 CPUs
        "hydra.launcher.mem_gb": 2,
        "hydra.launcher.timeout_min": 20,
    }
    overrides = [
        o
        for o in tiny_overrides(tmp_path, demo_root, 0.032, **extra)
        # run_dir stays ${hydra:runtime.output_dir}: one folder per job. The slice cache comes from
        # BRAINGAN_CACHE below, which shows that sbatch hands the environment to the jobs.
        if not o.startswith(("run_dir=", "dataset.cache_dir=", "paths.cache="))
    ]
    env = {**os.environ, "BRAINGAN_CACHE": str(env_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["make", "-s", "sweep", f"ARGS=-m {' '.join(overrides)}"],  # a -m in ARGS is harmless
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # The launcher waited for the jobs; none is left in the queue.
    jobs = slurm_cluster.wait_for_jobs(sweep, timeout=60)
    assert jobs, "submitit wrote no job folders"

    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra" / "overrides.yaml").is_file())
    assert [p.name for p in runs] == ["0", "1"]
    for run, gamma in zip(runs, ("0.5", "1")):
        assert f"model.r1_gamma={gamma}" in OmegaConf.load(run / ".hydra" / "overrides.yaml")
        assert OmegaConf.load(run / ".hydra" / "config.yaml").model.r1_gamma == float(gamma)
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["braingan"]["cur_nimg"] == 32
        assert list((run / "tb").glob("events.out.tfevents.*")), f"no TensorBoard events in {run}/tb"
        job = str(OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.job.id)
        assert re.fullmatch(r"\d+_\d", job), f"{run} did not run as a SLURM array task (job id {job})"
        assert job in jobs
    assert (env_cache / "slices").is_dir(), "the jobs did not see BRAINGAN_CACHE from the submitting shell"

    proc = subprocess.run(
        ["make", "-s", "sweep-report", f"DIR={sweep}"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("run "))
    assert "model.r1_gamma" in table[header].split()
    rows = {line.split()[0]: line.split() for line in table[header + 1 : header + 3]}
    assert rows["0"][1] == "0.5" and rows["1"][1] == "1"
    assert all("finished" in row for row in rows.values())
    with open(sweep / "sweep_report.csv", newline="") as f:
        report = list(csv.DictReader(f))
    assert [(r["run"], r["model.r1_gamma"], r["status"]) for r in report] == [
        ("0", "0.5", "finished"),
        ("1", "1", "finished"),
    ]
    assert all(abs(float(r["kimg"]) - 0.032) < 1e-9 for r in report)
