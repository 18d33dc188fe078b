"""`make guard` end to end on the CPU (plain vs optimized speed path from one seed), and the curve
comparison it rests on, shown to report curves that do not track each other. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from braingan.experiment.command import tool_arguments
from braingan.experiment.speed_guard import compare_curves, run_config
from braingan.guard import CPU_DEFAULTS
from helpers.runs import DEMO_SUBJECTS, REPO

TAGS = ("Loss/G", "Loss/D", "D/real", "D/fake")
STEPS = 16  # guard.kimg=0.128 at batch 8
PLAIN = {"fused_upconv": False, "fused_bias_act": False, "channels_last": False, "compile": False}
OPTIMIZED = {"fused_upconv": True, "fused_bias_act": True, "channels_last": True, "compile": False}  # CPU default


@pytest.fixture(scope="module")
def guard_run(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("guard")
    out = tmp / "out"
    args = [
        "trainer=cpu",  # the CPU guard (tiny defaults, channels_last on) also on a machine with a GPU
        f"dataset.root={demo_root}",
        f"dataset.demo_subjects={DEMO_SUBJECTS}",
        f"dataset.cache_dir={tmp / 'cache'}",
        "trainer.deterministic=true",
        "guard.kimg=0.128",
        f"guard.out={out}",
    ]
    # One thread: on a busy 2-core machine two OpenMP threads per process slow every step tenfold.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["make", "-s", "guard", "ARGS=" + " ".join(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "guard.json").read_text()), proc.stdout, out


@pytest.mark.slow
def test_make_guard_trains_both_paths_from_one_seed_and_compares_their_curves(guard_run):
    result, stdout, out = guard_run
    assert set(result) >= {"config", "runs", "tags", "png", "created"}
    c = result["config"]
    assert (c["model"], c["resolution"], c["batch_size"], c["kimg"], c["accelerator"]) == ("tiny", 32, 8, 0.128, "cpu")
    runs = result["runs"]
    assert runs["plain"]["speed"] == PLAIN and runs["optimized"]["speed"] == OPTIMIZED
    for name in ("plain", "optimized"):
        run = runs[name]
        assert run["steps"] == STEPS and run["kimg"] == pytest.approx(0.128), name
        assert run["seconds"] > 0 and run["median_sec_per_kimg"] > 0, name
        assert run["run_dir"] == str(out / name)
        assert (out / name / "tb").is_dir() and (out / name / "samples" / "reals.png").is_file()
        assert not (out / name / "checkpoints").exists()  # resume=last and make eval never pick a guard run
    assert list(result["tags"]) == list(TAGS)
    for tag, s in result["tags"].items():
        assert s["points"] == {"plain": STEPS, "optimized": STEPS, "common": STEPS}, tag
        assert set(s) == {"points", "first_step", "mad_over_std", "corr", "final"}, tag
        first = s["first_step"]
        assert first["step"] == 8
        # Same seed, same weights, latents and batch, equivalent math: the first step agrees to rounding.
        assert first["optimized"] == pytest.approx(first["plain"], rel=1e-4), tag
        assert first["rel_diff"] < 1e-4 and first["abs_diff"] == pytest.approx(abs(first["optimized"] - first["plain"]))
        assert np.isfinite(s["mad_over_std"]) and -1 <= s["corr"] <= 1 and set(s["final"]) == {"plain", "optimized"}
    png = out / "guard.png"
    assert result["png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 0  # 2 x 2 panels
    # The printed table shows both speed settings and every tag.
    assert "channels_last False" in stdout and "channels_last True" in stdout
    assert all(tag in stdout for tag in TAGS) and f"wrote {out / 'guard.json'}" in stdout


def _noisy(trend: np.ndarray, seed: int, scale: float = 0.2) -> np.ndarray:
    return trend + scale * np.random.default_rng(seed).standard_normal(len(trend))


def test_curves_that_track_each_other_are_reported_as_such():
    steps = np.arange(1, 201) * 8
    trend = np.linspace(1.5, 0.5, 200)
    s = compare_curves((steps, _noisy(trend, 0)), (steps, _noisy(trend, 1)), smoothing=0.9)
    assert s["points"] == {"plain": 200, "optimized": 200, "common": 200}
    assert s["corr"] > 0.9 and s["mad_over_std"] < 0.5
    same = compare_curves((steps, trend), (steps, trend.copy()), smoothing=0.9)
    assert same["mad_over_std"] == 0 and same["corr"] == pytest.approx(1) and same["first_step"]["rel_diff"] == 0


def test_curves_that_part_ways_are_reported_as_different():
    """The guard can fail: a run whose loss goes the other way, or starts elsewhere, shows it."""
    steps = np.arange(1, 201) * 8
    plain = _noisy(np.linspace(1.5, 0.5, 200), 0)
    apart = _noisy(np.linspace(0.5, 1.5, 200), 1)
    s = compare_curves((steps, plain), (steps, apart), smoothing=0.9)
    assert s["corr"] < -0.5 and s["mad_over_std"] > 1
    assert s["final"]["plain"] == pytest.approx(0.5, abs=0.2) and s["final"]["optimized"] == pytest.approx(1.5, abs=0.2)
    offset = compare_curves((steps, plain), (steps, plain + 0.01), smoothing=0.9)
    assert offset["first_step"]["abs_diff"] == pytest.approx(0.01) and offset["first_step"]["rel_diff"] > 1e-3


def test_only_steps_both_runs_logged_with_finite_values_are_compared():
    a = (np.array([8, 16, 24, 32, 40]), np.array([1.0, 2.0, np.nan, 4.0, 5.0]))
    b = (np.array([16, 24, 32, 40, 48]), np.array([2.0, 3.0, 4.0, 5.0, 6.0]))
    s = compare_curves(a, b, smoothing=0.0)
    assert s["points"] == {"plain": 5, "optimized": 5, "common": 3}  # 16, 32, 40 (24 is NaN in plain)
    assert s["first_step"]["step"] == 16 and s["mad_over_std"] == 0 and s["corr"] == pytest.approx(1)
    empty = compare_curves(a, (np.array([1, 2]), np.array([1.0, 2.0])), smoothing=0.5)
    assert empty["points"]["common"] == 0 and empty["first_step"] is None and empty["corr"] is None


def test_cpu_defaults_turn_channels_last_on_unless_the_command_line_chooses():
    args = tool_arguments(["guard.kimg=2"], cuda=False, cpu_defaults=CPU_DEFAULTS)
    assert "trainer=cpu" in args and "model=tiny" in args and "speed.channels_last=true" in args
    assert "guard.kimg=2" in args and "guard.kimg=1" not in args
    args = tool_arguments(["speed.channels_last=auto"], cuda=False, cpu_defaults=CPU_DEFAULTS)
    assert "speed.channels_last=true" not in args
    assert tool_arguments(["model=paper"], cuda=True, cpu_defaults=CPU_DEFAULTS) == ["model=paper"]


def test_each_run_logs_every_step_and_differs_from_the_other_only_in_speed(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from braingan.confdir import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="guard", overrides=["trainer=cpu", "batch_size=8", "guard.kimg=0.5"])
    plain = run_config(cfg, OmegaConf.merge(cfg.speed, cfg.guard.plain), tmp_path / "plain")
    fast = run_config(cfg, cfg.speed, tmp_path / "optimized")
    assert "guard" not in plain and plain.kimg == 0.5 and plain.schedule.log_kimg == 0.008
    assert plain.resume is None and plain.schedule.snapshot_kimg is None and plain.schedule.fid_kimg is None
    assert (plain.speed.fused_upconv, plain.speed.fused_bias_act, plain.speed.compile) == (False, False, False)
    assert (fast.speed.fused_upconv, fast.speed.fused_bias_act) == (True, True)
    a, b = (OmegaConf.to_container(c, resolve=False) for c in (plain, fast))
    for c in (a, b):
        c.pop("speed"), c.pop("run_dir")
    assert a == b
