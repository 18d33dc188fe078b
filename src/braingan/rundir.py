"""The layout of a run folder and of `outputs/`: the one module that knows where a run keeps what.

    outputs/                              OUTPUTS: every run of this working directory
      <date>/<time>/                      a run started by `make train` (Hydra's run folder)
      multirun/<date>/<time>/<n>/         point n of a sweep (`make sweep`), SWEEPS
      slurm/<job id>/                     a run inside a SLURM batch job (survives a requeue)
      bench/, guard/                      `make bench` / `make guard` results (not runs)
      gpu_check/<date>_<time>/            a `make gpu-check` (GpuCheckDir; its train/ is not a run of its own)
    <run>/
      .hydra/{config,hydra,overrides}.yaml  the composed settings and the command line's overrides
      checkpoints/last.ckpt               refreshed every schedule.last_kimg, at the end and on a stop
      checkpoints/kimg_<kimg>.ckpt        kept every schedule.snapshot_kimg
      checkpoints/best_fid.ckpt           the best FID so far (schedule.fid_kimg)
      tb/                                 TensorBoard event files
      samples/                            reals.png and fakes_<kimg>.png
      plots/                              the curves of `make plots`
      manifest.csv                        every slice the run read, with its subject and split
      train.log                           the run's log
      eval/                               metrics.json of `make eval`, audit.json of `make audit`
      generate/                           what `make generate` renders

Nothing here reads a checkpoint or knows Hydra: `checkpoint.py` owns the file format and
`experiment/resume.py` the continue/resume policy. This module only needs the standard library.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .utils.errors import MissingFileError

OUTPUTS = Path("outputs")  # relative to the working directory, as Hydra's run folders are
MULTIRUN = "multirun"  # sweeps, in OUTPUTS
SLURM = "slurm"  # runs of SLURM batch jobs, in OUTPUTS
SWEEPS = OUTPUTS / MULTIRUN
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST_FID = "best_fid.ckpt"
SNAPSHOT_PREFIX = "kimg_"
SNAPSHOT_GLOB = f"{SNAPSHOT_PREFIX}*.ckpt"
HYDRA_SUBDIR = ".hydra"
OVERRIDES = "overrides.yaml"  # the command line's overrides in HYDRA_SUBDIR: the marker of a run
CONFIG = "config.yaml"  # the composed settings in HYDRA_SUBDIR
HYDRA_CONFIG = "hydra.yaml"  # Hydra's own settings in HYDRA_SUBDIR
TB = "tb"
FAKES_GLOB = "fakes_*.png"  # the generated sample grids in samples/
EVENTS = "events.out.tfevents.*"  # TensorBoard's event files in TB
GPU_CHECK = "gpu_check"  # `make gpu-check` folders, in OUTPUTS
NOT_RUNS = ("guard", GPU_CHECK)  # folders of OUTPUTS whose training runs are a tool's (make guard's pairs,
# make gpu-check's short run), not runs of their own


@dataclass(frozen=True)
class RunDir:
    """A run folder: where each of its files lives (nothing is created or read here)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.path.expanduser(str(self.path))))

    @classmethod
    def of_checkpoint(cls, ckpt: str | os.PathLike) -> RunDir:
        """The run a checkpoint belongs to: <run>/checkpoints/x.ckpt -> <run>; a loose file -> its folder."""
        ckpt = Path(ckpt).expanduser().resolve()
        return cls(ckpt.parent.parent if ckpt.parent.name == CHECKPOINTS else ckpt.parent)

    @staticmethod
    def in_run(ckpt: str | os.PathLike) -> bool:
        """Whether a checkpoint file lies in a run's checkpoints/ folder (where its siblings are snapshots)."""
        return Path(ckpt).parent.name == CHECKPOINTS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best_fid(self) -> Path:
        return self.checkpoints / BEST_FID

    def snapshot(self, tag: str) -> Path:
        """checkpoints/kimg_<tag>.ckpt (`tag` from utils.io.kimg_tag)."""
        return self.checkpoints / snapshot_name(tag)

    def snapshots(self) -> list[Path]:
        """The kept snapshots, oldest first (their kimg tags sort in time order)."""
        return sorted(self.checkpoints.glob(SNAPSHOT_GLOB))

    @property
    def hydra(self) -> Path:
        return self.path / HYDRA_SUBDIR

    @property
    def config(self) -> Path:
        return self.hydra / CONFIG

    @property
    def hydra_config(self) -> Path:
        return self.hydra / HYDRA_CONFIG

    @property
    def overrides(self) -> Path:
        return self.hydra / OVERRIDES

    @property
    def tb(self) -> Path:
        return self.path / TB

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def fakes(self) -> list[Path]:
        """The generated sample grids samples/fakes_<kimg>.png, in training-time order (by their kimg tags)."""
        return sorted(self.samples.glob(FAKES_GLOB), key=_fakes_kimg)

    @property
    def plots(self) -> Path:
        """plots/: the curves `make plots` draws (by default)."""
        return self.path / "plots"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.csv"

    @property
    def init(self) -> Path:
        """init.json: where a fine-tuned run's weights came from (init=), beside manifest.csv."""
        return self.path / "init.json"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def generate(self) -> Path:
        return self.path / "generate"

    @property
    def export(self) -> Path:
        """export/: what `make export` writes by default (the generator to share)."""
        return self.path / "export"

    @property
    def project(self) -> Path:
        """project/: what `make project` writes by default (projections of real slices)."""
        return self.path / "project"

    def existing_last(self) -> Path | None:
        """checkpoints/last.ckpt when the folder already holds a run (a requeued job), else None."""
        return self.last if self.last.is_file() else None

    def is_run(self) -> bool:
        """Whether Hydra started a run here (its overrides.yaml exists)."""
        return self.overrides.is_file()


def _fakes_kimg(path: Path) -> tuple[float, str]:
    tag = path.stem.split("_", 1)[-1]  # fakes_000020 and fakes_000000.032 (utils.io.kimg_tag)
    try:
        return float(tag), path.name
    except ValueError:
        return math.inf, path.name


def snapshot_name(tag: str) -> str:
    return f"{SNAPSHOT_PREFIX}{tag}.ckpt"


def snapshot_tag(path: str | os.PathLike) -> str | None:
    """The kimg tag of a snapshot file name (kimg_000128.ckpt -> '000128'), else None."""
    stem = Path(path).stem
    return stem[len(SNAPSHOT_PREFIX) :] if stem.startswith(SNAPSHOT_PREFIX) else None


def newest_last_checkpoint(root: str | os.PathLike = OUTPUTS, setting: str = "ckpt") -> Path:
    """The most recently written <run>/checkpoints/last.ckpt below `root` (`setting` names the key in the error)."""
    root = Path(root)
    found = sorted(root.glob(f"**/{CHECKPOINTS}/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MissingFileError(
            f"{setting}=last: no {root}/**/{CHECKPOINTS}/{LAST} under {Path.cwd()}; pass {setting}=<file>"
        )
    return found[-1]


def newest_run(root: str | os.PathLike = OUTPUTS) -> Path:
    """The training run below `root` whose TensorBoard event file (tb/events.out.tfevents.*) was written last.

    Folders of `make guard` (<root>/guard/: its paired runs are not training runs) are skipped.
    """
    root = Path(root)
    tools = [(root / tool).resolve() for tool in NOT_RUNS]
    found = sorted(
        (p for p in root.glob(f"**/{TB}/{EVENTS}") if not any(p.resolve().is_relative_to(t) for t in tools)),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise MissingFileError(
            f"run=last: no training run with TensorBoard event files under {root.resolve()}; pass run=<run folder>"
        )
    return found[-1].parent.parent


def newest_sweep(root: str | os.PathLike = SWEEPS) -> Path:
    """The newest sweep folder, <root>/<date>/<time> (Hydra's sweep folders sort by name in time order)."""
    root = Path(root)
    found = sorted(p for p in root.glob("*/*") if p.is_dir())
    if not found:
        raise MissingFileError(
            f"no sweep folder under {root.resolve()}/<date>/<time>; pass the sweep folder (sweep=<folder>)"
        )
    return found[-1]


def sweep_runs(sweep: str | os.PathLike) -> list[Path]:
    """The run folders anywhere below `sweep` (those holding .hydra/overrides.yaml), in job-number order
    (natural order of their paths below `sweep`: 2 before 10)."""
    sweep = Path(sweep)
    runs = [p.parent.parent for p in sweep.glob(f"**/{HYDRA_SUBDIR}/{OVERRIDES}")]
    return sorted(runs, key=lambda p: _natural_key(p.relative_to(sweep)))


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def slurm_run(job: str, outputs: str | os.PathLike = OUTPUTS) -> Path:
    """<outputs>/slurm/<job id>: where a SLURM batch job (and its requeues) writes its run."""
    return Path(outputs) / SLURM / job


def tool_output(tool: str, stamp: str, suffix: str = "", outputs: str | os.PathLike = OUTPUTS) -> Path:
    """<outputs>/<tool>/<stamp><suffix>: where `make bench` and `make guard` put results that are not runs."""
    return Path(outputs) / tool / f"{stamp}{suffix}"


@dataclass(frozen=True)
class GpuCheckDir:
    """The folder of one `make gpu-check` (nothing is created or read here)::

    gpu_check.json        everything measured, phase by phase
    gpu_check.md          the short summary
    gpu_tests.log         pytest's output of the GPU tests; gpu_tests.jsonl: one line per test
    bench/<phase>.json    each training-speed measurement as `make bench` writes it
    train/                the short training run (a run folder: samples/, tb/, plots/; no checkpoints)
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.path.expanduser(str(self.path))))

    @property
    def json(self) -> Path:
        return self.path / "gpu_check.json"

    @property
    def markdown(self) -> Path:
        return self.path / "gpu_check.md"

    @property
    def tests_log(self) -> Path:
        return self.path / "gpu_tests.log"

    @property
    def tests_outcomes(self) -> Path:
        return self.path / "gpu_tests.jsonl"

    def bench(self, phase: str) -> Path:
        """bench/<phase>.json (`phase` a file-name-safe slug)."""
        return self.path / "bench" / f"{phase}.json"

    @property
    def train(self) -> RunDir:
        return RunDir(self.path / "train")


def gpu_check_dir(stamp: str, outputs: str | os.PathLike = OUTPUTS) -> Path:
    """<outputs>/gpu_check/<stamp>: the default folder of a `make gpu-check`."""
    return tool_output(GPU_CHECK, stamp, "", outputs)
