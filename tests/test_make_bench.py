"""`make bench` end to end on the CPU: the real training path, every JSON field, the lazy R1 and
path-length steps in their real proportion, and the printed table. No timing assertions."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from braingan.bench import CPU_DEFAULTS, format_table
from braingan.experiment.benchmark import lazy_period, round_up
from braingan.experiment.command import tool_arguments
from braingan.reporting.references import reference_for
from braingan.training.config import TrainConfig
from helpers.runs import DEMO_SUBJECTS, PAPER_256, REPO

FIELDS = (
    "device",
    "versions",
    "config",
    "warmup_steps",
    "measured_steps",
    "lazy_period",
    "r1_steps",
    "pl_steps",
    "nonfinite_steps",
    "measured_images",
    "seconds",
    "sec_per_kimg",
    "img_per_s",
    "step_ms",
    "peak_mem_gb",
    "gen_batch",
    "gen_images",
    "gen_img_per_s",
    "inception_batch",
    "inception_images",
    "inception_img_per_s",
    "reference",
    "created",
    "total_seconds",
)
CONFIG_FIELDS = (
    "resolution",
    "img_channels",
    "model",
    "channel_base",
    "channel_max",
    "mapping_layers",
    "batch_size",
    "precision",
    "num_fp16_res",
    "conv_clamp",
    "fused_modconv",
    "fused_upconv",
    "fused_bias_act",
    "channels_last",
    "compile",
    "augment",
    "r1_interval",
    "pl_interval",
    "params_G",
    "params_D",
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    args = [
        "trainer=cpu",  # the CPU bench (tiny defaults) also on a machine with a GPU
        f"dataset.root={demo_root}",
        f"dataset.demo_subjects={DEMO_SUBJECTS}",
        f"dataset.cache_dir={tmp / 'cache'}",
        "model.r1_interval=4",
        "model.pl_interval=2",
        "bench.warmup=2",
        "bench.steps=6",  # rounded up to 8, a multiple of lcm(4, 2)
        f"bench.out={out}",
    ]
    # One thread: on a busy 2-core machine two OpenMP threads per process slow every step tenfold.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["make", "-s", "bench", "ARGS=" + " ".join(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, tmp


@pytest.mark.slow
def test_make_bench_measures_the_real_training_steps_and_writes_every_field(bench_run):
    result, stdout, tmp = bench_run
    assert [k for k in FIELDS if k not in result] == []
    assert [k for k in CONFIG_FIELDS if k not in result["config"]] == []
    c = result["config"]
    assert (c["resolution"], c["model"], c["batch_size"], c["precision"]) == (32, "tiny", 8, "32-true")
    assert (c["r1_interval"], c["pl_interval"]) == (4, 2)
    # The measured span: 8 steps after 2 warm-up steps, with R1 every 4th and path length every 2nd step.
    assert (result["warmup_steps"], result["measured_steps"], result["lazy_period"]) == (2, 8, 4)
    assert (result["r1_steps"], result["pl_steps"]) == (2, 4)
    assert result["measured_images"] == 8 * 8
    assert sum(v["n"] for v in result["step_ms"].values()) == 8
    assert result["step_ms"]["r1+pl"]["n"] == 2 and result["step_ms"]["pl"]["n"] == 2  # every R1 step is also a PL step
    for key in ("sec_per_kimg", "img_per_s", "gen_img_per_s", "inception_img_per_s", "seconds"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["sec_per_kimg"] * result["img_per_s"] / 1000 == pytest.approx(1, rel=1e-3)
    assert result["peak_mem_gb"] is None and result["reference"] is None  # CPU
    assert result["device"]["type"] == "cpu" and result["versions"]["pytorch-lightning"]
    assert (result["gen_batch"], result["inception_images"]) == (64, 16)
    # The table prints the stored numbers.
    for key in ("sec_per_kimg", "img_per_s", "gen_img_per_s", "inception_img_per_s"):
        assert f"{result[key]:g}" in stdout, key
    assert "2 R1 + 4 path-length steps" in stdout and f"wrote {tmp / 'bench.json'}" in stdout
    assert sorted(p.name for p in tmp.iterdir()) == ["bench.json", "cache"]  # no checkpoints, logs or grids


@pytest.mark.slow
def test_table_shows_the_official_figures_beside_a_matching_gpu_run(bench_run):
    result = dict(bench_run[0], inception_img_per_s=None, inception_batch=None)  # as with bench.inception=false
    result["reference"] = dict(reference_for(PAPER_256, cuda=True), speedup=1.25)
    result["peak_mem_gb"] = {"allocated": 12.5, "reserved": 14.0}
    table = format_table(result)
    assert "reference" in table and "11.6" in table and "13.6" in table and "x1.25" in table
    assert "Inception img/s" in table


def test_measured_span_is_a_multiple_of_the_lazy_regularization_period():
    tc = TrainConfig()
    assert (tc.r1_interval, tc.pl_interval) == (16, 4) and lazy_period(tc) == 16
    assert lazy_period(TrainConfig(r1_interval=4, pl_interval=6)) == 12
    assert lazy_period(TrainConfig(r1_gamma=0, pl_interval=4)) == 4
    assert lazy_period(TrainConfig(r1_gamma=0, pl_weight=0)) == 1
    assert [round_up(n, 16) for n in (1, 16, 17, 128)] == [16, 16, 32, 128]


def test_reference_matches_only_the_measured_configurations():
    assert reference_for(PAPER_256, cuda=True)["sec_per_kimg"] == 11.6
    assert reference_for(dict(PAPER_256, augment="none"), cuda=True)["sec_per_kimg"] == 11.4
    base = dict(PAPER_256, channel_base=16384, mapping_layers=2, batch_size=64)
    assert reference_for(base, cuda=True)["sec_per_kimg"] == 6.0
    assert reference_for(PAPER_256, cuda=False) is None
    assert reference_for(dict(PAPER_256, resolution=128), cuda=True) is None
    assert reference_for(dict(PAPER_256, batch_size=64), cuda=True) is None


def test_cpu_gets_the_tiny_defaults_unless_the_command_line_chooses():
    args = tool_arguments(["model=small", "bench.steps=32"], cuda=False, cpu_defaults=CPU_DEFAULTS)
    assert "trainer=cpu" in args and "model=small" in args and "model=tiny" not in args
    assert "batch_size=8" in args and "bench.steps=32" in args and "bench.steps=16" not in args
    assert tool_arguments(["model=paper"], cuda=True, cpu_defaults=CPU_DEFAULTS) == ["model=paper"]  # the config's gpu
    assert "model=tiny" in tool_arguments(["trainer=cpu"], cuda=True, cpu_defaults=CPU_DEFAULTS)
