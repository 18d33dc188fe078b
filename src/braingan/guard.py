"""Entry point: `python -m braingan.guard [overrides]` (what `make guard` runs).

A quality guard for the speed switches (`speed:` in conf/train.yaml): they change how G and D
compute, never what, so from the same seed the plain and the optimized path must give training
curves that track each other. The per-operation equivalence is tested in
tests/nn/test_speed_switches.py; this checks the whole training loop.

Trains twice with the real training run (`experiment.run.train`), from the same seed and data order, for
`guard.kimg` kimg with a TensorBoard point at every step:

    <out>/plain/        speed.* replaced by `guard.plain` (no fused ops, NCHW, eager)
    <out>/optimized/    speed.* as composed (the path `make train` would take)

then reads both runs' scalars and writes

    <out>/guard.png     one panel per tag (`guard.tags`): both curves, raw faintly, smoothed on top
    <out>/guard.json    per tag: points, first-step difference, mean |difference| of the smoothed
                        curves over the plain curve's std, their correlation, final smoothed values;
                        the speed settings, steps and seconds of each run

and prints a table. The first step must agree to float rounding (same weights, latents, batch);
later steps drift apart as any two GAN runs with different rounding do, so what should hold is
that the smoothed curves follow the same course. Not FID: StyleGAN2 needs hundreds of kimg before
FID tells runs apart, and a short FID race compares noise with noise.

The runs keep their samples/ and tb/ but not their checkpoints (so that resume=last and
`make eval` never pick up a guard run). On the CPU (no CUDA, or trainer=cpu) the defaults are a
tiny run; see `CPU_DEFAULTS`.
"""

from __future__ import annotations

import sys

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .experiment.command import register_resolvers, tool_arguments
from .experiment.speed_guard import RUNS, guard

register_resolvers()

# The CPU guard: two runs of 125 steps, about a minute on two idle cores with OMP_NUM_THREADS=1
# (far longer on a busy machine). channels_last is off on the CPU under `auto`; the guard turns
# it on so that the CPU run exercises it too.
CPU_DEFAULTS = {
    "model": "tiny",
    "resolution": "32",
    "batch_size": "8",
    "guard.kimg": "1",
    "speed.channels_last": "true",
}


def _fmt(v, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def format_table(r: dict) -> str:
    """The printed summary of guard.json."""
    c, runs = r["config"], r["runs"]
    head = (
        f"guard     {c['resolution']}x{c['resolution']}, model {c['model']}, batch {c['batch_size']}, seed {c['seed']}, "
        f"{c['precision']} on {c['device']}, {c['kimg']:g} kimg per run, smoothing {c['smoothing']:g}"
    )
    lines = [head]
    for name in RUNS:
        run = runs[name]
        lines.append(
            f"{name:9s} "
            + ", ".join(f"{k} {v}" for k, v in run["speed"].items())
            + f" | {run['steps']} steps, {_fmt(run['seconds'])} s, median {_fmt(run['median_sec_per_kimg'])} s/kimg"
        )
    lines += [
        "",
        (
            f"{'tag':10s} {'points':>7s} {'1st plain':>11s} {'1st optim':>11s} {'1st rel':>9s} "
            f"{'|d|/std':>8s} {'corr':>7s} {'end plain':>10s} {'end optim':>10s}"
        ),
    ]
    for tag, s in r["tags"].items():
        first, final = s["first_step"] or {}, s["final"] or {}
        lines.append(
            f"{tag:10s} {s['points']['common']:7d} {_fmt(first.get('plain'), '.6g'):>11s} {_fmt(first.get('optimized'), '.6g'):>11s} "
            f"{_fmt(first.get('rel_diff'), '.2e'):>9s} {_fmt(s['mad_over_std'], '.3f'):>8s} {_fmt(s['corr'], '.3f'):>7s} "
            f"{_fmt(final.get('plain')):>10s} {_fmt(final.get('optimized')):>10s}"
        )
    lines.append(
        "1st: the first step (must agree to rounding); |d|/std: mean |smoothed difference| over the plain "
        "curve's std; corr: of the smoothed curves"
    )
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="guard", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("guard"):
        result = guard(cfg, model_name=HydraConfig.get().runtime.choices.get("model"))
    print(format_table(result))
    print(f"wrote {result['json']} and {result['png']}")


def main() -> None:
    args = tool_arguments(sys.argv[1:], torch.cuda.is_available(), CPU_DEFAULTS)
    cli.hydra_entry("guard", "guard", _hydra_main, args)


if __name__ == "__main__":
    main()
