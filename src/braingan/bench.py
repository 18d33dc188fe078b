"""Entry point: `python -m braingan.bench [overrides]` (what `make bench` runs).

Measures one configuration of the real training path and prints a table:

- training sec/kimg and img/s: `StyleGAN2Module` under a `pl.Trainer` built with the settings
  `make train` uses (precision, strategy, cudnn/TF32 flags, data loader). After `bench.warmup`
  steps the clock runs for `bench.steps` steps, rounded up to a multiple of
  lcm(r1_interval, pl_interval), so the lazy R1 and path-length steps appear in their real
  proportion; the R1 and path-length steps counted in that span are reported (observed from the
  module's recorded statistics, not computed from the config). Data fetching is inside the span.
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

import datetime as _dt
import json
import math
import platform
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import cli
from .conf_utils import CONF_DIR, insert_overrides, normalize_overrides, register_resolvers
from .metrics.features import extract_features
from .metrics.inception import InceptionFeatures
from .metrics.sources import generated_batches
from .train import (
    data_and_configs,
    default_trainer_override,
    requested_processes,
    set_backends,
    trainer_settings,
)
from .training.module import StyleGAN2Module
from .utils.errors import UsageError
from .utils.io import atomic_path, unused_path

register_resolvers()

# The CPU bench: small enough to finish in seconds on two cores (command-line choices win).
CPU_DEFAULTS = {
    "model": "tiny",
    "resolution": "'32'",
    "batch_size": "8",
    "bench.warmup": "2",
    "bench.steps": "16",
    "bench.gen_warmup": "1",
    "bench.gen_batches": "2",
    "bench.inception_batch": "16",
    "bench.inception_warmup": "1",
    "bench.inception_images": "16",
}

# Official NVlabs StyleGAN2 (stylegan3 repository, --cfg=stylegan2, custom CUDA kernels, FP16 in the
# 4 highest resolutions with conv clamping, --metrics=none), 1 NVIDIA H100 80GB, 256x256 grayscale
# (see /work/shared/anchors.md). Matched on the architecture, the batch and ADA on/off.
REFERENCE_SOURCE = (
    "official StyleGAN2-ADA (NVlabs stylegan3 --cfg=stylegan2, custom CUDA kernels, FP16 in the 4 highest "
    "resolutions with conv clamping), NVIDIA H100 80GB"
)
REFERENCES = [
    {"channel_base": 32768, "channel_max": 512, "mapping_layers": 8, "batch_size": 32, "ada": True,
     "sec_per_kimg": 11.6, "img_per_s": 86.0, "peak_mem_gb": 13.6},
    {"channel_base": 32768, "channel_max": 512, "mapping_layers": 8, "batch_size": 32, "ada": False,
     "sec_per_kimg": 11.4, "img_per_s": 88.0, "peak_mem_gb": 13.5},
    {"channel_base": 16384, "channel_max": 512, "mapping_layers": 2, "batch_size": 64, "ada": True,
     "sec_per_kimg": 6.0, "img_per_s": 167.0, "peak_mem_gb": 17.1},
]
REG_KEYS = {"r1": "Loss/r1_penalty", "pl": "Loss/pl_penalty"}  # statistics the module records per R1 / PL step
GIB = 2**30


def _sig(x: float | None, digits: int = 5) -> float | None:
    """x rounded to `digits` significant digits (what the JSON stores and the table prints)."""
    if x is None or x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def lazy_period(tc) -> int:
    """Steps after which the lazy-regularization pattern repeats: lcm of the active intervals."""
    intervals = []
    if tc.r1_gamma > 0 and tc.r1_interval > 1:
        intervals.append(tc.r1_interval)
    if tc.pl_weight > 0 and tc.pl_interval > 1:
        intervals.append(tc.pl_interval)
    return math.lcm(*intervals) if intervals else 1


def round_up(steps: int, period: int) -> int:
    """`steps` rounded up to a (nonzero) multiple of `period`."""
    return max(1, math.ceil(steps / period)) * period


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock(pl.Callback):
    """Times every step (synchronized), starts after `warmup` steps, stops the trainer after `steps` more."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.done = 0
        self.device = torch.device("cpu")
        self.last = 0.0
        self.t0 = self.t1 = 0.0
        self.nimg0 = self.nimg1 = 0
        self.nonfinite0 = self.nonfinite1 = 0
        self.counts = {k: 0 for k in REG_KEYS}
        self.measured: list[dict] = []  # per measured step: seconds, r1, pl
        self.peak: dict | None = None

    @staticmethod
    def _counts(module) -> dict[str, int]:
        return {k: len(module._stats.get(key, [])) for k, key in REG_KEYS.items()}

    def on_train_start(self, trainer, module) -> None:
        self.device = module.device

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.done += 1
        counts = self._counts(module)
        if self.warmup < self.done <= self.warmup + self.steps:
            self.measured.append({"s": now - self.last, **{k: counts[k] - self.counts[k] for k in REG_KEYS}})
        self.counts, self.last = counts, now
        if self.done == self.warmup:
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.t0, self.nimg0, self.nonfinite0 = now, module.cur_nimg, module.nonfinite_total
        elif self.done == self.warmup + self.steps:
            self.t1, self.nimg1, self.nonfinite1 = now, module.cur_nimg, module.nonfinite_total
            if self.device.type == "cuda":
                self.peak = {
                    "allocated": _sig(torch.cuda.max_memory_allocated(self.device) / GIB, 4),
                    "reserved": _sig(torch.cuda.max_memory_reserved(self.device) / GIB, 4),
                }
            trainer.should_stop = True


def measure_training(cfg: DictConfig, warmup: int, steps: int) -> tuple[StyleGAN2Module, StepClock, dict]:
    """The real training path for warmup + steps (rounded) steps; returns the module, clock and config facts."""
    t = cfg.trainer
    if requested_processes(t) > 1:
        raise UsageError("make bench measures one process: use trainer.devices=1 trainer.num_nodes=1")
    set_backends(t)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm, net, train_cfg = data_and_configs(cfg)  # no manifest.csv: nothing is written
    steps = round_up(steps, lazy_period(train_cfg))
    train_cfg.total_kimg = 2 * (warmup + steps) * cfg.batch_size / 1000  # the clock stops first
    module = StyleGAN2Module(net, train_cfg, dm.data_info())
    clock = StepClock(warmup, steps)
    with tempfile.TemporaryDirectory(prefix="braingan-bench-") as root:
        trainer = pl.Trainer(
            **trainer_settings(t),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            callbacks=[clock],
        )
        trainer.fit(module, datamodule=dm)
    if clock.done < warmup + steps:
        raise RuntimeError(f"training stopped after {clock.done} of {warmup + steps} steps")
    facts = {
        "num_fp16_res": net.num_fp16_res,
        "conv_clamp": net.conv_clamp,
        "fused_modconv": net.fused_modconv,
        "fused_upconv": net.fused_upconv,
        "fused_bias_act": net.fused_bias_act,
        "channels_last": net.channels_last,
        "compile": train_cfg.compile,
        "c_dim": net.c_dim,
        "r1_interval": train_cfg.r1_interval,
        "pl_interval": train_cfg.pl_interval,
        "params_G": sum(p.numel() for p in module.G.parameters()),
        "params_D": sum(p.numel() for p in module.D.parameters()),
        "ada_p_end": _sig(module.ada_p, 4),
    }
    return module, clock, facts


def measure_generation(G: torch.nn.Module, device: torch.device, batch: int, warmup: int, batches: int) -> float:
    """img/s of the EMA generator, drawn as eval draws it (noise_mode=random, uint8 on the host)."""
    G = G.to(device).eval()
    labels = torch.arange((warmup + batches) * batch) % max(G.c_dim, 1)
    stream = generated_batches(G, labels, batch, seed=0, device=device)
    for _ in range(warmup):
        next(stream)
    _sync(device)
    start, n = time.perf_counter(), 0
    for images in stream:
        n += len(images)
    _sync(device)
    return n / (time.perf_counter() - start)


def measure_inception(cfg: DictConfig, device: torch.device, batch: int, warmup: int, images: int) -> float:
    """img/s of the Inception-v3 feature extractor on uint8 [N, C, R, R] images at the model resolution."""
    extractor = InceptionFeatures(batch_size=batch).to(device)
    g = torch.Generator().manual_seed(0)
    shape = (cfg.img_channels, cfg.resolution, cfg.resolution)
    extract_features(extractor, torch.randint(0, 256, (warmup * batch, *shape), generator=g, dtype=torch.uint8), batch, progress=False)
    imgs = torch.randint(0, 256, (images, *shape), generator=g, dtype=torch.uint8)
    _sync(device)
    start = time.perf_counter()
    extract_features(extractor, imgs, batch, progress=False)
    _sync(device)
    return images / (time.perf_counter() - start)


def reference_for(config: dict, cuda: bool) -> dict | None:
    """The official figures for this configuration (256x256 grayscale, paper/base width, batch 32/64, GPU)."""
    if not cuda or config["resolution"] != 256 or config["img_channels"] != 1:
        return None
    keys = ("channel_base", "channel_max", "mapping_layers", "batch_size")
    found = [r for r in REFERENCES if all(r[k] == config[k] for k in keys)]
    ada = config["augment"] != "none"
    found.sort(key=lambda r: r["ada"] != ada)  # the same ADA setting first
    if not found:
        return None
    return {"source": REFERENCE_SOURCE, **found[0]}


def _device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "count": torch.cuda.device_count()}
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return {"type": "cpu", "name": name, "threads": torch.get_num_threads()}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "pytorch-lightning", "braingan"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def default_out(root: str | Path = "outputs") -> Path:
    return unused_path(Path(root) / "bench" / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.json"))


def bench(cfg: DictConfig, model_name: str | None = None) -> dict:
    """Runs every measurement the config asks for, writes the JSON and returns its content."""
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # G_ema stays in eval mode
    b = cfg.bench
    if int(b.warmup) < 1 or int(b.steps) < 1:
        raise UsageError(f"bench.warmup={b.warmup} and bench.steps={b.steps} must be at least 1")
    started = time.time()
    module, clock, facts = measure_training(cfg, int(b.warmup), int(b.steps))
    device = clock.device
    m = cfg.model
    config = {
        "resolution": int(cfg.resolution), "img_channels": int(cfg.img_channels), "model": model_name,
        "channel_base": int(m.channel_base), "channel_max": int(m.channel_max), "mapping_layers": int(m.mapping_layers),
        "z_dim": int(m.z_dim), "w_dim": int(m.w_dim), "batch_size": int(cfg.batch_size),
        "precision": str(cfg.trainer.precision), "augment": str(cfg.augment.mode),
        "dataset": str(cfg.dataset.name), "num_workers": int(cfg.trainer.num_workers),
        "cudnn_benchmark": bool(cfg.trainer.benchmark), "allow_tf32": bool(cfg.trainer.allow_tf32), **facts,
    }
    seconds = clock.t1 - clock.t0
    images = clock.nimg1 - clock.nimg0
    by_kind: dict[str, list[float]] = {}
    for s in clock.measured:
        kind = "+".join(k for k in ("r1", "pl") if s[k]) or "plain"
        by_kind.setdefault(kind, []).append(s["s"] * 1000)
    result = {
        "device": _device_info(device),
        "versions": _versions(),
        "config": config,
        "warmup_steps": clock.warmup,
        "measured_steps": clock.steps,
        "lazy_period": lazy_period(module.train_cfg),
        "r1_steps": sum(s["r1"] for s in clock.measured),
        "pl_steps": sum(s["pl"] for s in clock.measured),
        "nonfinite_steps": clock.nonfinite1 - clock.nonfinite0,
        "measured_images": images,
        "seconds": _sig(seconds),
        "sec_per_kimg": _sig(seconds / (images / 1000)),
        "img_per_s": _sig(images / seconds),
        "step_ms": {k: {"n": len(v), "mean": _sig(sum(v) / len(v), 4)} for k, v in sorted(by_kind.items())},
        "peak_mem_gb": clock.peak,
        "gen_batch": int(b.gen_batch),
        "gen_images": int(b.gen_batches) * int(b.gen_batch),
        "gen_img_per_s": _sig(measure_generation(module.G_ema, device, int(b.gen_batch), int(b.gen_warmup), int(b.gen_batches))),
        "inception_batch": int(b.inception_batch) if b.inception else None,
        "inception_images": int(b.inception_images) if b.inception else None,
        "inception_img_per_s": (_sig(measure_inception(cfg, device, int(b.inception_batch), int(b.inception_warmup), int(b.inception_images)))
                                if b.inception else None),
        "reference": reference_for(config, device.type == "cuda"),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "total_seconds": round(time.time() - started, 1),
    }
    if result["reference"] is not None:
        result["reference"]["speedup"] = _sig(result["reference"]["sec_per_kimg"] / result["sec_per_kimg"], 3)
    out = Path(str(b.out)).expanduser() if b.out else default_out()
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(out)
    return result


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
        lines.append(f"reference: {ref['source']}, batch {ref['batch_size']}, ADA {'on' if ref['ada'] else 'off'} "
                     f"(anchors.md); this run is x{ref['speedup']:g} its speed")
        if c["precision"] != "16-mixed" or c["num_fp16_res"] != 4:
            lines.append("  (the reference ran FP16 in the 4 highest resolutions: compare it with "
                         "trainer.precision=16-mixed model.num_fp16_res=4)")
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="bench", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    choices = HydraConfig.get().runtime.choices
    with cli.user_errors("bench"):
        result = bench(cfg, model_name=choices.get("model"))
    print(format_table(result))
    print(f"wrote {result['json']}")


def with_defaults(args: list[str], cuda: bool, cpu_defaults: dict[str, str] | None = None) -> list[str]:
    """The command line plus trainer=gpu|cpu for this machine and, for the CPU, the tiny `cpu_defaults`
    (None = this file's CPU_DEFAULTS; make guard passes its own)."""
    cpu_defaults = CPU_DEFAULTS if cpu_defaults is None else cpu_defaults
    names = {a.split("=")[0].lstrip("+~") for a in args if "=" in a}
    extra = []
    choice = default_trainer_override(args, cuda)
    if choice is not None:
        extra.append(choice)
    cpu = choice == "trainer=cpu" or any(a.lstrip("+~") == "trainer=cpu" for a in args)
    if cpu:
        extra += [f"{k}={v}" for k, v in cpu_defaults.items() if k not in names]
    return insert_overrides(args, extra)


def main() -> None:
    args = with_defaults(normalize_overrides(sys.argv[1:]), torch.cuda.is_available())
    cli.hydra_entry("bench", "bench", _hydra_main, args)


if __name__ == "__main__":
    main()
