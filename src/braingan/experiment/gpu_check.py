"""What `make gpu-check` does: one process, one budget, every GPU fact a new cluster needs.

`gpu_check(cfg, overrides)` takes the composed conf/gpu_check.yaml and the command line's
overrides, and runs these phases in order, each isolated (an error such as an out-of-memory or a
compile failure is recorded with its one-line reason and the check goes on; GPU memory is freed
and the peak statistics reset between phases):

    environment   versions, GPU, driver, bf16/TF32, CPU cores, DataLoader workers (reporting/gpu_report.py)
    gpu tests     the suite's tests marked `gpu`, in a pytest subprocess, one outcome and duration per
                  test (experiment/gpu_tests.py)
    data          the dataset built and decoded once at the check's resolution
    bench         training sec/kimg and peak memory through `make bench`'s code (experiment/benchmark.py)
                  for each of gpu_check.configs at each of gpu_check.precisions, then once with
                  speed.compile=true at the fastest finite precision of gpu_check.compile
    train         the gpu_check.train configuration with its fastest finite setting (experiment/run.py),
                  as many kimg as the budget leaves (at least gpu_check.train_min_kimg): sample grids,
                  the loss curves (reporting/curves.py), finite losses

Before each phase its cost is estimated from what the check measured so far (the slowest sec/kimg
of the same configuration, the setup time of the last measurement), else from gpu_check.guess;
a phase that no longer fits in what is left of budget_s is skipped, and the record says why
(the sequence, the budget and the isolation: experiment/phases.py).
The results go to <out>/gpu_check.json and gpu_check.md (rundir.GpuCheckDir); exit code 0 when
everything that ran passed, 1 when a GPU test failed or a phase failed or raised.

Without CUDA (and without dry_run) nothing is measured or written: the result holds the
environment and the one line that says so. dry_run=true runs every phase at gpu_check.dry's size
on the CPU, with the GPU tests seeing no GPU.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from ..reporting.curves import plot_scalars
from ..reporting.gpu_report import environment, environment_lines, markdown
from ..reporting.references import reference_for
from ..reporting.tables import significant
from ..reporting.tensorboard import event_dir, read_scalars
from ..rundir import GpuCheckDir, gpu_check_dir
from ..utils.errors import UsageError, one_line
from ..utils.io import atomic_path, unused_path
from .benchmark import bench, lazy_period, round_up
from .gpu_tests import find_tests, run_gpu_tests
from .phases import ERROR, FAILED, OK, Budget, Phase, run_phases
from .run import train
from .settings import build_configs, build_datamodule, check_settings
from .trainer import requested_processes

Compose = Callable[[list[str]], DictConfig]


def hydra_compose(config_name: str = "gpu_check") -> Compose:
    """Overrides -> the composed config, through Hydra's compose API (inside the running Hydra app)."""

    def compose(overrides: list[str]) -> DictConfig:
        from hydra import compose as hydra_compose

        try:
            return hydra_compose(config_name=config_name, overrides=overrides)
        except Exception as error:  # a configuration of gpu_check.configs Hydra cannot compose
            raise UsageError(f"cannot compose {' '.join(overrides)}: {one_line(error)}") from None

    return compose


# ---------------------------------------------------------------------------------------------------
# Estimates


@dataclass
class Measured:
    """One finished training-speed measurement, as the estimates need it."""

    label: str  # its configuration, e.g. "paper/32"
    precision: str
    compile: bool
    sec_per_kimg: float
    overhead_s: float  # wall time besides the steps: setup, generation timing, compilation


def bench_estimate(
    history: list[Measured],  # the measurements so far, in order
    label: str,
    model: str,
    steps: int,  # warm-up + measured steps
    batch_size: int,
    compile: bool,
    guess: DictConfig | dict,  # gpu_check.guess
) -> float:
    """Seconds a measurement will take: the setup of the last measurement (else guess.setup_s; plus
    guess.compile_s for the first compiled one) + its steps at the slowest sec/kimg measured for the
    same configuration (else guess.sec_per_kimg of the model)."""
    same = [m.sec_per_kimg for m in history if m.label == label]
    per_model = dict(guess["sec_per_kimg"])
    sec_per_kimg = max(same) if same else float(per_model.get(model, max(per_model.values())))
    overhead = history[-1].overhead_s if history else float(guess["setup_s"])
    if compile and not any(m.compile for m in history):
        overhead += float(guess["compile_s"])
    return overhead + steps * batch_size / 1000 * sec_per_kimg


def train_plan(
    left_s: float,  # budget left
    overhead_s: float,  # setup of the run (the chosen measurement's)
    sec_per_kimg: float,  # the chosen measurement's speed
    batch_size: int,
    min_kimg: float,
    kimg: float | None = None,  # a fixed length (gpu_check.train_kimg), else as long as the budget allows
) -> tuple[float, float]:
    """(kimg, estimated seconds) of the training run: whole batches, at least `min_kimg`."""
    if kimg is None:
        images = max(0.0, left_s - overhead_s) / sec_per_kimg * 1000
        kimg = max(math.floor(images / batch_size) * batch_size, math.ceil(min_kimg * 1000 / batch_size) * batch_size)
        kimg /= 1000
    return kimg, overhead_s + kimg * sec_per_kimg


def finite(records: list[dict], label: str) -> list[dict]:
    """The finished measurements of `label` without a non-finite step, fastest first."""
    done = [
        r
        for r in records
        if r["kind"] == "bench"
        and r["label"] == label
        and r["status"] == OK
        and r["result"]["nonfinite_steps"] == 0
        and math.isfinite(r["result"]["sec_per_kimg"])
    ]
    return sorted(done, key=lambda r: r["result"]["sec_per_kimg"])


def fastest(records: list[dict], label: str) -> dict | None:
    """The finished measurement of `label` with the lowest sec/kimg and no non-finite step, or None."""
    done = finite(records, label)
    return done[0] if done else None


# ---------------------------------------------------------------------------------------------------
# The check


class GpuCheck:
    """The phases of one check over one composed config; see the module docstring."""

    def __init__(self, cfg: DictConfig, overrides: list[str], compose: Compose, say: Callable[[str], None] = print):
        self.cfg, self.g, self.say, self.compose = cfg, cfg.gpu_check, say, compose
        self.dry = bool(cfg.dry_run)
        # What the command line set, less what the phases set themselves (and the check's own options).
        own = ("budget_s", "dry_run", "out")
        self.user = [o for o in overrides if _key(o) not in own and not _key(o).startswith("gpu_check")]
        self.configs: list[dict[str, Any]] = [
            {"model": str(c["model"]), "batch_size": int(c["batch_size"])} for c in self.g.configs
        ]
        if not self.configs:
            raise UsageError("gpu_check.configs is empty: give at least one {model: ..., batch_size: ...}")
        self.precisions = [str(p) for p in self.g.precisions]
        self.history: list[Measured] = []
        self.records: list[dict] = []
        self.folder: GpuCheckDir | None = None
        self.budget: Budget | None = None
        self.references: dict[str, dict | None] = {}  # label -> the official figures of that configuration
        # (precision, compile, its measurement, kimg, estimated s): chosen by the training phase's estimate
        self.training: tuple[str, bool, Measured | None, float, float] = ("32-true", False, None, 0.0, 0.0)

    # -- configurations -------------------------------------------------------------------------

    def label(self, config: dict) -> str:
        return f"{config['model']}/{config['batch_size']}"

    def config_named(self, setting: str, model) -> dict | None:
        """The entry of gpu_check.configs whose model is `model` (None for null); `setting` names the key in errors."""
        if model is None or str(model) == "":
            return None
        found = next((c for c in self.configs if c["model"] == str(model)), None)
        if found is None:
            names = ", ".join(c["model"] for c in self.configs)
            raise UsageError(f"gpu_check.{setting}={model}: not one of gpu_check.configs (models {names})")
        return found

    def size(self, config: dict) -> tuple[str, int, int]:
        """(model, batch, resolution) a configuration runs at: its own, or gpu_check.dry's in a dry run."""
        if self.dry:
            d = self.g.dry
            return str(d.model), int(d.batch_size), int(d.resolution)
        return config["model"], config["batch_size"], int(self.g.resolution)

    def phase_config(self, config: dict, precision: str, compile: bool = False) -> DictConfig:
        """The composed config of one phase: the command line, the configuration's model, batch, resolution,
        the precision and compile switch (and gpu_check.dry's overrides in a dry run)."""
        model, batch, resolution = self.size(config)
        mine = [f"model={model}", *(str(o) for o in self.g.dry.overrides)] if self.dry else [f"model={model}"]
        keys = {_key(o) for o in mine}
        cfg = self.compose([o for o in self.user if _key(o) not in keys] + mine)
        with open_dict(cfg):
            cfg.batch_size, cfg.resolution = batch, resolution
            cfg.trainer.precision = precision
            cfg.speed.compile = compile
        return cfg

    def preflight(self) -> DictConfig:
        """Refuses, before anything runs, what no phase could use: the check's own settings, each
        configuration's settings, the dataset. Returns the first configuration's config."""
        budget_s = self.cfg.budget_s
        if not isinstance(budget_s, (int, float)) or isinstance(budget_s, bool) or not budget_s > 0:
            raise UsageError(f"budget_s={budget_s} must be a number of seconds > 0")
        kimg = self.g.train_kimg
        if str(kimg) != "auto" and (not isinstance(kimg, (int, float)) or isinstance(kimg, bool) or kimg <= 0):
            raise UsageError(f"gpu_check.train_kimg={kimg} must be auto or a number of kimg > 0")
        if not self.precisions:
            raise UsageError("gpu_check.precisions is empty: give at least one, e.g. [bf16-mixed]")
        self.config_named("compile", self.g.compile)
        self.config_named("train", self.g.train)
        find_tests(self.g.tests)
        out = self.cfg.out
        if out:
            folder = GpuCheckDir(Path(str(out)))
            if folder.path.exists() and not folder.path.is_dir():
                raise UsageError(f"out={folder.path} is a file: give a folder for the check's results")
            if folder.json.exists():
                raise UsageError(f"out={folder.path} already holds a check ({folder.json.name}): choose another folder")
        first = None
        for config in self.configs:
            cfg = self.phase_config(config, self.precisions[0])
            check_settings(cfg, 1)
            if requested_processes(cfg.trainer) > 1:
                raise UsageError("make gpu-check measures one process: use trainer.devices=1 trainer.num_nodes=1")
            first = first if first is not None else cfg
            m = cfg.model
            facts = {
                "resolution": int(cfg.resolution),
                "img_channels": int(cfg.img_channels),
                "channel_base": int(m.channel_base),
                "channel_max": int(m.channel_max),
                "mapping_layers": int(m.mapping_layers),
                "batch_size": int(cfg.batch_size),
                "augment": str(cfg.augment.mode),
            }
            self.references[self.label(config)] = reference_for(facts, cuda=_cuda() and not self.dry)
        assert first is not None
        if str(first.dataset.name) != "demo":  # the demo set is built by the data phase
            build_datamodule(first).discover_records()
        return first

    # -- phases ---------------------------------------------------------------------------------

    def phases(self) -> list[Phase]:
        g, guess = self.g, self.g.guess
        tests = find_tests(g.tests)
        out: list[Phase] = [
            Phase(
                "gpu tests",
                "tests",
                estimate=lambda: float(guess.tests_s),
                run=lambda: self.run_tests(tests),
                skip=lambda: self.tests_skip(tests),
            ),
            Phase("data", "data", estimate=lambda: float(guess.data_s), run=self.run_data),
        ]
        for config in self.configs:
            for precision in self.precisions:
                out.append(self.bench_phase(config, precision, False))
        compiled = self.config_named("compile", g.compile)
        if compiled is not None:
            out.append(self.bench_phase(compiled, None, True))
        trained = self.config_named("train", g.train)
        if trained is not None:
            out.append(
                Phase(
                    f"train {self.label(trained)}",
                    "train",
                    estimate=lambda: self.train_estimate(trained),
                    run=lambda: self.run_train(trained),
                    skip=self.after_data,
                    facts={"label": self.label(trained)},
                )
            )
        return out

    def tests_skip(self, tests: Path | None) -> str | None:
        if tests is None:
            return "tests not found, skipped" if str(self.g.tests) == "auto" else "gpu_check.tests=null"
        if importlib.util.find_spec("pytest") is None:
            return "pytest is not installed, skipped"
        return None

    def run_tests(self, tests: Path | None) -> dict:
        assert tests is not None and self.folder is not None and self.budget is not None
        timeout = min(float(self.g.tests_timeout_s), self.budget.left())
        return run_gpu_tests(tests, self.folder.tests_outcomes, self.folder.tests_log, timeout, hide_gpus=self.dry)

    def run_data(self) -> dict:
        cfg = self.phase_config(self.configs[0], self.precisions[0])
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")
        return {
            "dataset": str(cfg.dataset.name),
            "resolution": int(cfg.resolution),
            "train_slices": len(dm.dataset) if dm.dataset is not None else 0,
            "records": len(dm.records),
            "cache_dir": cfg.dataset.cache_dir,
        }

    def after_data(self) -> str | None:
        data = next((r for r in self.records if r["kind"] == "data"), None)
        if data is not None and data["status"] != OK:
            return f"the data phase did not finish ({data['status']})"
        return None

    def bench_phase(self, config: dict, precision: str | None, compile: bool) -> Phase:
        """A measurement of `config` at `precision` (None: the fastest finite one measured, with compile)."""
        label = self.label(config)
        name = f"bench {label} " + ("compile" if compile else str(precision))
        facts = {"label": label, "precision": precision, "compile": compile, "reference": self.references.get(label)}

        def chosen() -> str | None:
            best = fastest(self.records, label)
            return best["precision"] if best is not None else None

        def skip() -> str | None:
            reason = self.after_data()
            if reason is None and compile and chosen() is None:
                reason = f"no finite measurement of {label} to take the precision from"
            return reason

        def estimate() -> float:
            model, batch, _ = self.size(config)
            cfg = self.phase_config(config, precision or chosen() or self.precisions[0], compile)
            period = lazy_period(build_configs(cfg)[1])
            steps = int(cfg.bench.warmup) + round_up(int(cfg.bench.steps), period)
            return bench_estimate(self.history, label, model, steps, batch, compile, self.g.guess)

        def run() -> dict:
            p = precision or chosen()
            assert p is not None and self.folder is not None
            records = [r for r in self.records if r["name"] == name]
            records[-1]["precision"] = p
            cfg = self.phase_config(config, p, compile)
            slug = f"{label.replace('/', '-')}_{p}" + ("_compile" if compile else "")
            with open_dict(cfg):
                cfg.bench.out = str(self.folder.bench(slug))
            result = bench(cfg, model_name=self.size(config)[0])
            result.pop("versions", None)  # the environment record has them
            seconds, total = float(result["seconds"]), float(result["total_seconds"])
            batch = int(cfg.batch_size)
            warm = int(result["warmup_steps"]) * batch / 1000 * float(result["sec_per_kimg"])
            overhead = max(total - seconds - warm, 0.0)
            self.history.append(Measured(label, p, compile, float(result["sec_per_kimg"]), overhead))
            return result

        return Phase(name, "bench", estimate=estimate, run=run, skip=skip, facts=facts)

    def train_estimate(self, config: dict) -> float:
        """Chooses the training run's setting and length (self.training) and returns its estimated seconds.

        Each costs its measurement's setup + guess.train_s + kimg at its sec/kimg. The fastest finite
        measurement of `config` whose setup and at least gpu_check.train_min_kimg fit
        in the budget left (a compiled setting's compilation may not, where an eager one would); without
        any, the fastest finite one (which the budget then refuses); without a measurement, the first precision.
        """
        assert self.budget is not None
        model, batch, _ = self.size(config)
        label, guess = self.label(config), self.g.guess
        fixed = self.g.dry.train_kimg if self.dry else self.g.train_kimg
        fixed_kimg = None if str(fixed) == "auto" else float(fixed)
        left, min_kimg = self.budget.left(), float(self.g.train_min_kimg)
        measured = {(m.precision, m.compile): m for m in self.history if m.label == label}
        plans: list[tuple[str, bool, Measured | None, float, float]] = []
        extra = float(guess.train_s)  # what a run has that a measurement has not
        for r in finite(self.records, label):
            m = measured[(r["precision"], r["compile"])]
            kimg, estimate = train_plan(left, m.overhead_s + extra, m.sec_per_kimg, batch, min_kimg, fixed_kimg)
            plans.append((str(r["precision"]), bool(r["compile"]), m, kimg, estimate))
        if not plans:
            per_model = dict(guess.sec_per_kimg)
            spk = float(per_model.get(model, max(per_model.values())))
            kimg, estimate = train_plan(left, float(guess.setup_s) + extra, spk, batch, min_kimg, fixed_kimg)
            plans.append((self.precisions[0], False, None, kimg, estimate))
        self.training = next((p for p in plans if p[4] <= left), plans[0])
        return self.training[4]

    def run_train(self, config: dict) -> dict:
        assert self.folder is not None and self.budget is not None
        precision, compile, m, kimg, _ = self.training
        rd = self.folder.train
        cfg = self.phase_config(config, precision, compile)
        batch = int(cfg.batch_size)
        stop_s = max(int(self.budget.left()), 60)  # a run that goes over its estimate stops at the budget
        with open_dict(cfg):
            cfg.kimg = kimg
            cfg.run_dir = str(rd.path)
            cfg.resume = None
            cfg.schedule.log_kimg = max(batch, round(kimg * 1000 / 50 / batch) * batch) / 1000  # about 50 points
            cfg.schedule.image_kimg = None  # sample grids at the start and the end
            cfg.schedule.last_kimg = cfg.schedule.snapshot_kimg = cfg.schedule.fid_kimg = None
            cfg.trainer.max_time = f"00:{stop_s // 3600:02d}:{stop_s // 60 % 60:02d}:{stop_s % 60:02d}"
        best = fastest(self.records, self.label(config))
        if m is None:
            choice = "no finite measurement: the first precision"
        elif best is not None and (best["precision"], best["compile"]) != (precision, compile):
            choice = f"the fastest finite ({best['name']}) does not fit its setup in the budget"
        else:
            choice = "the fastest finite measurement"
        self.say(
            f"[gpu_check] training {self.label(config)} at {precision}" + (" compiled" if compile else "")
            + f" for {kimg:g} kimg ({choice})"
        )  # fmt: skip
        start = time.monotonic()
        run = train(cfg)
        seconds = time.monotonic() - start
        shutil.rmtree(rd.checkpoints, ignore_errors=True)  # resume=last and make eval never pick this run
        scalars = read_scalars(event_dir(run))
        plots = plot_scalars(scalars, rd.plots)
        progress = scalars.get("Progress/kimg")
        done = float(progress[1][-1]) if progress is not None else None
        speed = scalars.get("Speed/sec_per_kimg")
        losses = {t: v for t, v in scalars.items() if t.startswith("Loss/")}
        bad = sorted(t for t, (_, values) in losses.items() if not np.isfinite(values).all())
        nonfinite = scalars.get("Progress/nonfinite_steps")
        skipped = int(nonfinite[1].max()) if nonfinite is not None else 0
        fakes = rd.fakes()
        result: dict[str, Any] = {
            "model": self.size(config)[0],
            "batch_size": batch,
            "resolution": int(cfg.resolution),
            "precision": precision,
            "compile": compile,
            "choice": choice,
            "kimg_planned": kimg,
            "kimg": significant(done),
            "seconds": significant(seconds),
            # the median logged speed after the first window (which holds cudnn autotuning and compilation)
            "sec_per_kimg": significant(float(np.median(speed[1][1:] if len(speed[1]) > 1 else speed[1])))
            if speed is not None
            else None,
            "final": {t: significant(float(v[-1]), 4) for t, (_, v) in sorted(losses.items()) if len(v)},
            "nonfinite_steps": skipped,
            "run_dir": str(rd.path),
            "samples": str(fakes[-1]) if fakes else None,
            "plots": [str(p) for p in plots],
        }
        if done is not None and done + 1e-9 < kimg:
            result["note"] = f"stopped at the budget after {done:g} of {kimg:g} kimg"
        if bad or skipped:
            result["failure"] = (
                f"non-finite {', '.join(bad)}" if bad else f"{skipped} non-finite step(s) at {precision}"
            )
        elif not fakes:
            result["failure"] = "no sample grid was written"
        return result

    # -- the whole check ------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        created = _dt.datetime.now()
        first = self.preflight()
        env = environment(num_workers=int(first.trainer.num_workers))
        env_s = time.monotonic() - started
        result: dict[str, Any] = {
            "created": created.isoformat(timespec="seconds"),
            "dry_run": self.dry,
            "budget_s": float(self.cfg.budget_s),
            "environment": env,
        }
        for line in environment_lines(env):
            self.say(line)
        if not env["cuda_available"] and not self.dry:
            reason = env.get("gpu_unusable")
            result["no_cuda"] = (
                "gpu_check: no CUDA device visible to torch"
                + (f" ({reason})" if reason else "")
                + ": nothing measured (dry_run=true runs every phase at tiny size on the CPU)"
            )
            result["exit_code"] = 0
            return result
        outputs = str(self.cfg.paths.outputs)
        path = (
            Path(os.path.expanduser(str(self.cfg.out)))
            if self.cfg.out
            else unused_path(gpu_check_dir(created.strftime("%Y-%m-%d_%H-%M-%S"), outputs))
        )
        self.folder = folder = GpuCheckDir(path)
        folder.path.mkdir(parents=True, exist_ok=True)
        self.budget = Budget(float(self.cfg.budget_s), float(self.g.reserve_s), time.monotonic)
        self.budget.start = started  # the budget counts from the check's start (the environment report included)
        self.records = [
            {"name": "environment", "kind": "environment", "status": OK, "reason": None, "estimate_s": None}
            | {"wall_s": significant(env_s, 3), "result": None}
        ]
        result.update(out=str(folder.path), json=str(folder.json), markdown=str(folder.markdown))

        def write(finished: bool) -> None:  # after every phase: a check stopped by a time limit keeps what it did
            failed = [r for r in self.records if r["status"] in (FAILED, ERROR)]
            result.update(
                phases=self.records,
                finished=finished,
                elapsed_s=significant(time.monotonic() - started, 4),
                exit_code=1 if failed else 0,
            )
            with atomic_path(folder.json) as tmp:
                tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
            with atomic_path(folder.markdown) as tmp:
                tmp.write_text(markdown(result), encoding="utf-8")

        write(False)
        run_phases(self.phases(), self.budget, self.say, records=self.records, done=lambda: write(False))
        write(True)
        return result


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _cuda() -> bool:
    return torch.cuda.is_available()


def gpu_check(
    cfg: DictConfig, overrides: list[str], compose: Compose | None = None, say: Callable[[str], None] = print
) -> dict:
    """Runs the check the composed conf/gpu_check.yaml describes (see the module docstring); returns its result."""
    return GpuCheck(cfg, overrides, compose or hydra_compose(), say).run()
