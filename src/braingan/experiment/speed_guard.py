"""What `make guard` does: the plain and the optimized speed path trained from one seed, compared.

See the entry point guard.py for the outputs. `guard(cfg)` takes the composed conf/guard.yaml and
returns the result it wrote; nothing here prints tables or reads the command line.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..reporting.figures import figure, save_figure
from ..reporting.tables import significant
from ..reporting.tensorboard import event_dir, read_scalars, smooth
from ..rundir import OUTPUTS, RunDir, tool_output
from ..utils.errors import UsageError
from ..utils.io import atomic_path, unused_path
from .run import train
from .settings import build_configs
from .trainer import requested_processes

RUNS = ("plain", "optimized")


def compare_curves(
    plain: tuple[np.ndarray, np.ndarray],  # (steps [T], values [T]) of the reference run
    optimized: tuple[np.ndarray, np.ndarray],  # (steps [U], values [U]) of the run under test
    smoothing: float,  # TensorBoard EMA weight in [0, 1)
) -> dict:
    """How closely two curves of one tag agree, on the steps both logged with finite values.

    first_step: the first common step's values and their absolute and relative (to |plain|)
    difference. mad_over_std: mean |smoothed optimized - smoothed plain| over the std of the raw
    plain curve (its own step-to-step spread); 0 = identical, about 1 = apart by a typical
    fluctuation. corr: Pearson correlation of the smoothed curves (None when one is constant or
    fewer than 3 points). final: the last smoothed values.
    """
    (sa, va), (sb, vb) = plain, optimized
    common, ia, ib = np.intersect1d(sa, sb, assume_unique=True, return_indices=True)
    a, b = np.asarray(va, np.float64)[ia], np.asarray(vb, np.float64)[ib]
    finite = np.isfinite(a) & np.isfinite(b)
    common, a, b = common[finite], a[finite], b[finite]
    result: dict[str, Any] = {
        "points": {"plain": len(sa), "optimized": len(sb), "common": len(common)},
        "first_step": None,
        "mad_over_std": None,
        "corr": None,
        "final": None,
    }
    if len(common) == 0:
        return result
    diff = abs(b[0] - a[0])
    result["first_step"] = {
        "step": int(common[0]),
        "plain": float(a[0]),
        "optimized": float(b[0]),
        "abs_diff": float(diff),
        "rel_diff": float(diff / abs(a[0])) if a[0] != 0 else (0.0 if diff == 0 else None),
    }
    sm_a, sm_b = smooth(a, smoothing), smooth(b, smoothing)
    mad, spread = float(np.mean(np.abs(sm_b - sm_a))), float(np.std(a))
    result["mad_over_std"] = mad / spread if spread > 0 else (0.0 if mad == 0 else None)
    if len(common) >= 3 and np.std(sm_a) > 0 and np.std(sm_b) > 0:
        result["corr"] = float(np.corrcoef(sm_a, sm_b)[0, 1])
    result["final"] = {"plain": float(sm_a[-1]), "optimized": float(sm_b[-1])}
    return result


def plot_overlay(
    scalars: dict[str, dict],  # run name -> tag -> (steps in images, values)
    tags: list[str],  # one panel each
    stats: dict[str, dict],  # tag -> compare_curves result (shown in the panel title)
    path: Path,  # the PNG to write
    smoothing: float,
    dpi: int = 100,
) -> None:
    fig, axes = figure(len(tags))
    for ax, tag in zip(axes, tags):
        for k, name in enumerate(RUNS):
            if tag not in scalars[name]:
                continue
            steps, values = scalars[name][tag]
            kimg, color = steps / 1000.0, f"C{k}"
            style = (
                {"linestyle": "--", "linewidth": 1.4} if name == "optimized" else {"linewidth": 2.4}
            )  # both visible where equal
            ax.plot(kimg, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(kimg, smooth(values, smoothing), color=color, label=name, **style)
        s = stats.get(tag, {})
        detail = []
        if s.get("corr") is not None:
            detail.append(f"corr {s['corr']:.3f}")
        if s.get("mad_over_std") is not None:
            detail.append(f"mean |diff| / std {s['mad_over_std']:.3f}")
        ax.set_title(tag + (f"  ({', '.join(detail)})" if detail else ""))
        ax.set_xlabel("training time (kimg)")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path, dpi)


def speed_settings(cfg: DictConfig) -> dict:
    """The speed switches of a run's config as its networks get them (build_configs: channels_last=auto resolved)."""
    net, train_cfg = build_configs(cfg)
    out: dict[str, Any] = {
        "fused_upconv": net.fused_upconv,
        "fused_bias_act": net.fused_bias_act,
        "channels_last": net.channels_last,
        "compile": train_cfg.compile,
    }
    if train_cfg.compile:
        out.update(compile_mode=train_cfg.compile_mode, compile_backend=train_cfg.compile_backend)
    return out


def run_config(cfg: DictConfig, speed, run_dir: Path) -> DictConfig:
    """The training config of one guard run: `speed`, guard.kimg, a point per step, no checkpoints kept."""
    c = copy.deepcopy(cfg)
    with open_dict(c):
        kimg = float(c.guard.kimg)
        del c["guard"]
        c.speed = speed
        c.run_dir = str(run_dir)
        c.kimg = kimg
        c.resume = None
        c.schedule.log_kimg = c.batch_size / 1000  # every step is a point
        c.schedule.image_kimg = None  # sample grids at the start and the end only
        c.schedule.last_kimg = None
        c.schedule.snapshot_kimg = None
        c.schedule.fid_kimg = None
    return c


def default_out(outputs: str | Path = OUTPUTS) -> Path:
    """outputs/guard/<date>/<time> (a new name if taken)."""
    now = _dt.datetime.now()
    return unused_path(tool_output("guard", now.strftime("%Y-%m-%d"), "", outputs) / now.strftime("%H-%M-%S"))


def guard(cfg: DictConfig, model_name: str | None = None) -> dict:
    """Trains the plain and the optimized run, compares their curves, writes the PNG and the JSON."""
    g = cfg.guard
    if float(g.kimg) <= 0:
        raise UsageError(f"guard.kimg={g.kimg} must be positive")
    if requested_processes(cfg.trainer) > 1:
        raise UsageError("make guard trains in one process: use trainer.devices=1 trainer.num_nodes=1")
    out = Path(str(g.out)).expanduser() if g.out else default_out()
    taken = [str(out / n) for n in RUNS if (out / n).exists()]
    if taken:
        raise UsageError(f"guard.out={out} already holds {', '.join(taken)}: choose another folder")
    speeds = {"plain": OmegaConf.merge(cfg.speed, g.plain), "optimized": cfg.speed}
    accelerator = str(cfg.trainer.accelerator)
    runs: dict[str, dict] = {}
    scalars: dict[str, dict] = {}
    for name in RUNS:
        run_cfg = run_config(cfg, speeds[name], out / name)
        settings = speed_settings(run_cfg)
        print(f"[guard] {name} run: " + ", ".join(f"{k} {v}" for k, v in settings.items()), flush=True)
        start = time.perf_counter()
        run_dir = train(run_cfg)
        seconds = time.perf_counter() - start
        shutil.rmtree(RunDir(run_dir).checkpoints, ignore_errors=True)
        scalars[name] = read_scalars(event_dir(run_dir))
        progress = scalars[name].get("Progress/kimg")
        kimg = float(progress[1][-1]) if progress is not None else None
        step_s = scalars[name].get("Speed/sec_per_kimg")
        runs[name] = {
            "speed": settings,
            "run_dir": str(run_dir),
            "kimg": significant(kimg),
            "steps": round(kimg * 1000 / int(cfg.batch_size)) if kimg is not None else None,
            "seconds": significant(seconds),  # wall clock of train(): setup, data, the steps, sample grids
            # the median logged step speed after the first step (which holds one-time costs)
            "median_sec_per_kimg": significant(float(np.median(step_s[1][1:])))
            if step_s is not None and len(step_s[1]) > 1
            else None,
        }
    tags = [str(t) for t in g.tags]
    missing = [f"{t} ({n})" for t in tags for n in RUNS if t not in scalars[n]]
    if missing:
        raise UsageError(f"guard.tags: not logged by the runs: {', '.join(missing)}")
    smoothing = float(g.smoothing)
    stats = {t: compare_curves(scalars["plain"][t], scalars["optimized"][t], smoothing) for t in tags}
    plot_overlay(scalars, tags, stats, out / "guard.png", smoothing)
    result = {
        "config": {
            "model": model_name,
            "resolution": int(cfg.resolution),
            "batch_size": int(cfg.batch_size),
            "seed": int(cfg.seed),
            "kimg": float(g.kimg),
            "precision": str(cfg.trainer.precision),
            "accelerator": accelerator,
            "dataset": str(cfg.dataset.name),
            "smoothing": smoothing,
            "device": torch.cuda.get_device_name()
            if accelerator in ("gpu", "cuda") and torch.cuda.is_available()
            else "cpu",
        },
        "runs": runs,
        "tags": stats,
        "png": str(out / "guard.png"),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    with atomic_path(out / "guard.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(out / "guard.json")
    return result
