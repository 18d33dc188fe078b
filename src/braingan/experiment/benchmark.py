"""What `make bench` measures: the real training path, the EMA generator and Inception, timed.

See the entry point bench.py for what each figure means. Nothing here prints or knows Hydra's
command line; `bench(cfg)` takes the composed conf/bench.yaml and returns the result it wrote.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import cast

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ..metrics.features import extract_features
from ..metrics.inception import InceptionFeatures
from ..metrics.sources import generated_batches
from ..reporting.environment import device_info, versions
from ..reporting.references import reference_for
from ..reporting.tables import significant
from ..rundir import OUTPUTS, tool_output
from ..training.module import StyleGAN2Module
from ..utils.errors import UsageError
from ..utils.io import atomic_path, unused_path
from .settings import data_and_configs
from .trainer import requested_processes, set_backends, trainer_settings

REG_KEYS = {"r1": "Loss/r1_penalty", "pl": "Loss/pl_penalty"}  # statistics the module records per R1 / PL step
GIB = 2**30


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
    """Times every step, starts after `warmup` steps, stops the trainer after `steps` more.

    The steps run as in training, without a synchronization between them (the training step
    never waits for the GPU, so the host queues the next step while the GPU runs this one): on
    CUDA each step end is a recorded event, and the times are read once the span is over. The
    host waits for the GPU only at the start of the span and at its end.
    """

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.done = 0
        self.device = torch.device("cpu")
        self.t0 = self.t1 = 0.0
        self.nimg0 = self.nimg1 = 0
        self.nonfinite0 = self.nonfinite1 = 0
        self.counts = {k: 0 for k in REG_KEYS}
        self.marks: list = []  # the start and each measured step's end: a CUDA event or a perf_counter time
        self.kinds: list[dict[str, int]] = []  # per measured step: r1, pl steps it held
        self.measured: list[dict] = []  # per measured step: seconds, r1, pl (filled at the end)
        self.peak: dict | None = None

    @staticmethod
    def _counts(module) -> dict[str, int]:
        return {k: len(module._stats.get(key, [])) for k, key in REG_KEYS.items()}

    def _mark(self):
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1000 if self.device.type == "cuda" else b - a

    def on_train_start(self, trainer, module) -> None:
        self.device = module.device

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.done += 1
        counts = self._counts(module)
        if self.warmup < self.done <= self.warmup + self.steps:
            self.marks.append(self._mark())
            self.kinds.append({k: counts[k] - self.counts[k] for k in REG_KEYS})
        self.counts = counts
        if self.done == self.warmup:
            _sync(self.device)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.marks = [self._mark()]
            self.t0, self.nimg0, self.nonfinite0 = time.perf_counter(), module.cur_nimg, module.nonfinite_total
        elif self.done == self.warmup + self.steps:
            _sync(self.device)
            self.t1, self.nimg1, self.nonfinite1 = time.perf_counter(), module.cur_nimg, module.nonfinite_total
            self.measured = [
                {"s": self._seconds(a, b), **kind} for a, b, kind in zip(self.marks, self.marks[1:], self.kinds)
            ]
            if self.device.type == "cuda":
                self.peak = {
                    "allocated": significant(torch.cuda.max_memory_allocated(self.device) / GIB, 4),
                    "reserved": significant(torch.cuda.max_memory_reserved(self.device) / GIB, 4),
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
    train_cfg.kimg = 2 * (warmup + steps) * cfg.batch_size / 1000  # the clock stops first
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
        "ada_p_end": significant(module.ada_p, 4),
    }
    return module, clock, facts


def measure_generation(G: torch.nn.Module, device: torch.device, batch: int, warmup: int, batches: int) -> float:
    """img/s of the EMA generator, drawn as eval draws it (noise_mode=random, uint8 on the host)."""
    G = G.to(device).eval()
    labels = torch.arange((warmup + batches) * batch) % max(cast(int, G.c_dim), 1)
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
    extract_features(
        extractor,
        torch.randint(0, 256, (warmup * batch, *shape), generator=g, dtype=torch.uint8),
        batch,
        progress=False,
    )
    imgs = torch.randint(0, 256, (images, *shape), generator=g, dtype=torch.uint8)
    _sync(device)
    start = time.perf_counter()
    extract_features(extractor, imgs, batch, progress=False)
    _sync(device)
    return images / (time.perf_counter() - start)


def default_out(outputs: str | Path = OUTPUTS) -> Path:
    """outputs/bench/<date>_<time>.json (a new name if taken)."""
    return unused_path(tool_output("bench", _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), ".json", outputs))


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
        "resolution": int(cfg.resolution),
        "img_channels": int(cfg.img_channels),
        "model": model_name,
        "channel_base": int(m.channel_base),
        "channel_max": int(m.channel_max),
        "mapping_layers": int(m.mapping_layers),
        "z_dim": int(m.z_dim),
        "w_dim": int(m.w_dim),
        "batch_size": int(cfg.batch_size),
        "precision": str(cfg.trainer.precision),
        "augment": str(cfg.augment.mode),
        "dataset": str(cfg.dataset.name),
        "num_workers": int(cfg.trainer.num_workers),
        "cudnn_benchmark": bool(cfg.trainer.benchmark),
        "allow_tf32": bool(cfg.trainer.allow_tf32),
        **facts,
    }
    seconds = clock.t1 - clock.t0
    images = clock.nimg1 - clock.nimg0
    by_kind: dict[str, list[float]] = {}
    for s in clock.measured:
        kind = "+".join(k for k in ("r1", "pl") if s[k]) or "plain"
        by_kind.setdefault(kind, []).append(s["s"] * 1000)
    result = {
        "device": device_info(device),
        "versions": versions(),
        "config": config,
        "warmup_steps": clock.warmup,
        "measured_steps": clock.steps,
        "lazy_period": lazy_period(module.train_cfg),
        "r1_steps": sum(s["r1"] for s in clock.measured),
        "pl_steps": sum(s["pl"] for s in clock.measured),
        "nonfinite_steps": clock.nonfinite1 - clock.nonfinite0,
        "measured_images": images,
        "seconds": significant(seconds),
        "sec_per_kimg": significant(seconds / (images / 1000)),
        "img_per_s": significant(images / seconds),
        "step_ms": {k: {"n": len(v), "mean": significant(sum(v) / len(v), 4)} for k, v in sorted(by_kind.items())},
        "peak_mem_gb": clock.peak,
        "gen_batch": int(b.gen_batch),
        "gen_images": int(b.gen_batches) * int(b.gen_batch),
        "gen_img_per_s": significant(
            measure_generation(module.G_ema, device, int(b.gen_batch), int(b.gen_warmup), int(b.gen_batches))
        ),
        "inception_batch": int(b.inception_batch) if b.inception else None,
        "inception_images": int(b.inception_images) if b.inception else None,
        "inception_img_per_s": (
            significant(
                measure_inception(cfg, device, int(b.inception_batch), int(b.inception_warmup), int(b.inception_images))
            )
            if b.inception
            else None
        ),
        "reference": reference_for(config, device.type == "cuda"),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "total_seconds": round(time.time() - started, 1),
    }
    if result["reference"] is not None:
        result["reference"]["speedup"] = significant(result["reference"]["sec_per_kimg"] / result["sec_per_kimg"], 3)
    out = Path(str(b.out)).expanduser() if b.out else default_out()
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(out)
    return result
