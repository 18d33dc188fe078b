"""Entry point: `python -m braingan.bench [overrides]` (what `make bench` runs).

Measures one configuration of the real training path and prints a table:

- training sec/kimg and img/s: `StyleGAN2Module` under a `pl.Trainer` built with the settings
  `make train` uses (precision, strategy, cudnn/TF32 flags, data loader). After `bench.warmup`
  steps the clock runs for `bench.steps` steps, rounded up to a multiple of
  lcm(r1_interval, pl_interval), so the lazy R1 and path-length steps appear in their real
  proportion; the R1 and path-length steps counted in that span are reported (observed from the
  module's recorded statistics, not computed from the config). Data fetching is inside the span.
  The steps are not synchronized one by one (CUDA events time them): the host waits for the GPU
  at the span's start and end only, as training does at its logging ticks.
- peak GPU memory (allocated and reserved, GiB = 2^30 bytes, like the official training log)
  over the measured span; null on the CPU.
- generation img/s: the EMA generator at `bench.gen_batch` images per call, as eval draws them
  (random noise, uint8 on the host).
- Inception img/s: `InceptionFeatures` on uint8 images at the model resolution, as eval feeds it.

Writes a JSON file (`bench.out`, default outputs/bench/<date>_<time>.json) and nothing else: no
checkpoints, grids, TensorBoard or run folder. The configuration is conf/bench.yaml = conf/train.yaml
plus the `bench:` keys. On the CPU (no CUDA, or trainer=cpu) the defaults are a tiny run; see
`CPU_DEFAULTS`. At 256x256, model paper/base, batch 32/64 on a GPU, the table shows the official
StyleGAN2-ADA figures measured on an H100 beside this run.
"""

from __future__ import annotations

import sys

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .experiment.benchmark import bench
from .experiment.command import register_resolvers, tool_arguments

register_resolvers()

# The CPU bench: small enough to finish in seconds on two cores (command-line choices win).
CPU_DEFAULTS = {
    "model": "tiny",
    "resolution": "32",
    "batch_size": "8",
    "bench.warmup": "2",
    "bench.steps": "16",
    "bench.gen_warmup": "1",
    "bench.gen_batches": "2",
    "bench.inception_batch": "16",
    "bench.inception_warmup": "1",
    "bench.inception_images": "16",
}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def format_table(r: dict) -> str:
    """The printed summary; numbers exactly as stored in the JSON."""
    c, ref = r["config"], r["reference"]
    mem = r["peak_mem_gb"] or {}
    dev = r["device"]
    rows = [
        ("training sec/kimg", r["sec_per_kimg"], ref and ref["sec_per_kimg"]),
        ("training img/s", r["img_per_s"], ref and ref["img_per_s"]),
        ("peak GPU mem allocated (GiB)", mem.get("allocated"), ref and ref["peak_mem_gb"]),
        ("peak GPU mem reserved (GiB)", mem.get("reserved"), None),
        (f"generation img/s (G_ema, batch {r['gen_batch']})", r["gen_img_per_s"], None),
        (f"Inception img/s (batch {r['inception_batch']})", r["inception_img_per_s"], None),
    ]
    lines = [
        f"device    {dev['name']} ({dev['type']}) | torch {r['versions']['torch']} | lightning {r['versions']['pytorch-lightning']}",
        f"config    {c['resolution']}x{c['resolution']}x{c['img_channels']}, model {c['model']} (channel_base {c['channel_base']}, "
        f"channel_max {c['channel_max']}, {c['mapping_layers']} mapping layers; G {c['params_G'] / 1e6:.2f} M, "
        f"D {c['params_D'] / 1e6:.2f} M params), batch {c['batch_size']}, {c['precision']} (num_fp16_res {c['num_fp16_res']}, "
        f"conv_clamp {c['conv_clamp']}), augment {c['augment']}",
        f"speed     fused_modconv {c['fused_modconv']}, fused_upconv {c['fused_upconv']}, fused_bias_act "
        f"{c['fused_bias_act']}, channels_last {c['channels_last']}, compile {c['compile']}",
        f"measured  {r['measured_steps']} steps ({r['measured_images']} images, {r['seconds']:g} s) after {r['warmup_steps']} "
        f"warm-up steps: {r['r1_steps']} R1 + {r['pl_steps']} path-length steps (period {r['lazy_period']}); "
        f"non-finite steps {r['nonfinite_steps']}",
        "",
        f"{'':36s} {'this run':>12s}" + (f" {'reference':>12s}" if ref else ""),
    ]
    for name, value, reference in rows:
        lines.append(f"{name:36s} {_fmt(value):>12s}" + (f" {_fmt(reference):>12s}" if ref else ""))
    steps = ", ".join(f"{k} {v['mean']:g} ms x{v['n']}" for k, v in r["step_ms"].items())
    lines.append(f"step time by kind: {steps}")
    if ref:
        lines.append(
            f"reference: {ref['source']}, batch {ref['batch_size']}, ADA {'on' if ref['ada'] else 'off'} "
            f"(docs/anchors.md); this run is x{ref['speedup']:g} its speed"
        )
        if c["precision"] != "16-mixed" or c["num_fp16_res"] != 4:
            lines.append(
                "  (the reference ran FP16 in the 4 highest resolutions: compare it with "
                "trainer.precision=16-mixed model.num_fp16_res=4)"
            )
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="bench", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    choices = HydraConfig.get().runtime.choices
    with cli.user_errors("bench"):
        result = bench(cfg, model_name=choices.get("model"))
    print(format_table(result))
    print(f"wrote {result['json']}")


def main() -> None:
    args = tool_arguments(sys.argv[1:], torch.cuda.is_available(), CPU_DEFAULTS)
    cli.hydra_entry("bench", "bench", _hydra_main, args)


if __name__ == "__main__":
    main()
