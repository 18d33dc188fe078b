"""The export format: a generator to share, readable without our training code's pickles.

`make export` (braingan.export_model) writes a folder

    generator.safetensors   G_ema's state dict in the safetensors format (no pickle)
    config.json             what rebuilds G and uses it: FORMAT, FORMAT_VERSION, the NetworkConfig dict,
                            class names, resolution, native geometry (data.fit.Geometry), the source
                            checkpoint and its kimg, the `init` record of a fine-tuned run, the
                            TorchScript check, and the SHA-256 of every other file of the folder
    MODEL_CARD.md           data, splits, training, evaluation, intended use, limitations, licence
    manifest.csv            (manifest=true, the default) the run's slices with subject, class and split, paths
                            relative to the data set's folder: what `make eval` on the folder compares with
    generator.pt            (torchscript=true) TorchScript of z [N, z_dim] (, one-hot c [N, c_dim])
                            -> images [N, C, R, R] in [-1, 1], the generator's fixed noise

`load_export(folder)` rebuilds the generator with json, the safetensors format and `braingan.nn`
alone: nothing is unpickled and `braingan.checkpoint` is not imported (`write_export` imports it
to read the source checkpoint). Every listed file's checksum is verified first; a missing or altered
file, a folder that is not an export and an export of a newer format are refused in one line.
config.json's "data" records the data set (name, layout, folder, training splits, fit policy), so
`make eval CKPT=<folder>` finds the real slices where they are now (`data_root=`; the demo data
set is rebuilt where this machine keeps it).

The weights are written and read by the `safetensors` package (requirements.txt).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .nn.config import NetworkConfig
from .nn.synthesis import Generator
from .rundir import RunDir
from .utils.errors import MissingFileError, UsageError
from .utils.io import file_digest

FORMAT = "braingan-export"  # config.json's "format": what marks a folder as an export
FORMAT_VERSION = 1  # written into config.json; a folder of a newer version is refused
CONFIG = "config.json"
WEIGHTS = "generator.safetensors"
TORCHSCRIPT = "generator.pt"
CARD = "MODEL_CARD.md"
TOLERANCE = 1e-4  # the largest |TorchScript - eager| pixel difference (images in [-1, 1]) an export accepts
GENERATOR_CLASS = "braingan.nn.synthesis.Generator"


class ExportError(UsageError):
    """The folder is not a braingan export, or one of its files is missing or altered."""


@dataclass(frozen=True)
class ExportInfo:
    """What an export's config.json says (its checksums verified)."""

    folder: Path
    format_version: int
    net: NetworkConfig
    net_dict: dict  # the NetworkConfig dict as stored
    class_names: list[str]  # label order; [] when unlabelled
    geometry_dict: dict | None  # data.fit.Geometry of the training images; None = keep the model square
    source: dict  # {"checkpoint": path, "kimg": float, "cur_nimg": int, "which": "G_ema"}
    init: dict | None  # a fine-tuned model: where its training started; None = from scratch
    torchscript: dict | None  # {"file", "max_abs_diff", "tolerance", ...}; None = not exported
    files: dict[str, str]  # file name -> SHA-256
    data: dict  # {"dataset", "layout", "root", "splits", "fit"[, "demo_subjects"]}; {} = not recorded
    data_root: Path | None = None  # where manifest.csv's relative paths are now; None = data["root"]

    # What `make eval` reads of a source, as of a checkpoint's CheckpointInfo

    @property
    def path(self) -> Path:
        return self.folder

    @property
    def run(self) -> RunDir:
        """The folder as a run folder: manifest.csv, eval/metrics.json (no tb/, so no TensorBoard)."""
        return RunDir(self.folder)

    @property
    def has_manifest(self) -> bool:
        return self.run.manifest.name in self.files

    @property
    def manifest_root(self) -> Path | None:
        """The folder manifest.csv's relative paths are below (data_root, else the recorded one)."""
        root = self.data_root or self.data.get("root")
        return Path(root).expanduser() if root else None

    @property
    def splits(self) -> list[str]:
        return [str(split) for split in self.data.get("splits") or ["train"]]

    @property
    def fit(self) -> str:
        return str(self.data.get("fit") or (self.geometry_dict or {}).get("fit", "pad"))

    @property
    def channels(self) -> int:
        return int(self.net.img_channels)

    @property
    def cur_nimg(self) -> int:
        return int(self.source.get("cur_nimg", 0))

    @property
    def run_config(self) -> None:
        """An export keeps no training settings beyond the model card's; None like an old checkpoint."""
        return None

    @property
    def geometry(self):
        """data.fit.Geometry of the training images, or None."""
        from .data.fit import Geometry

        return Geometry.from_dict(self.geometry_dict) if self.geometry_dict else None

    @property
    def resolution(self) -> int:
        return int(self.net.img_resolution)

    @property
    def kimg(self) -> float:
        return float(self.source.get("kimg", 0.0))

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the export was made from (as recorded; it need not exist here)."""
        return Path(self.source["checkpoint"]) if self.source.get("checkpoint") else None


# ---------------------------------------------------------------------------------------------
# safetensors


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Writes `tensors` as a safetensors file (the `safetensors` package; no pickle)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; one line when the file is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ExportError(f"{Path(path).name} is not a readable safetensors file ({error})") from None


# ---------------------------------------------------------------------------------------------
# Reading


def run_hint(folder: Path, setting: str = "ckpt") -> str:
    """'; it is a run folder: use ckpt=<its last.ckpt>' when `folder` is a run with a last checkpoint, else ''."""
    from .rundir import RunDir

    last = RunDir(folder).last
    return f"; it is a run folder: use {setting}={last}" if last.is_file() else ""


def not_a_checkpoint_file(folder: str | os.PathLike, setting: str = "ckpt") -> str:
    """The one line for a folder named where a training checkpoint file is needed."""
    folder = Path(folder)
    if is_export(folder):
        return f"{setting}={folder} is an export folder already; make export reads a training checkpoint file"
    return f"{setting}={folder} is a folder, not a checkpoint file{run_hint(folder, setting)}"


def is_export(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a folder with a config.json (an export, or meant to be one)."""
    return Path(folder).is_dir() and (Path(folder) / CONFIG).is_file()


def read_export_info(folder: str | os.PathLike, setting: str = "ckpt") -> ExportInfo:
    """An export folder's config.json, its format and every listed file's checksum checked."""
    folder = Path(folder).expanduser()
    where = f"{setting}={folder}"
    if not folder.exists():
        raise MissingFileError(f"{where}: no such export folder")
    if not folder.is_dir():
        raise ExportError(f"{where} is not an export folder (it is a file)")
    if not (folder / CONFIG).is_file():
        raise ExportError(f"{where} is not a braingan export folder (it has no {CONFIG}){run_hint(folder, setting)}")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (ValueError, UnicodeDecodeError):
        raise ExportError(f"{where} is not a braingan export folder ({CONFIG} is not JSON)") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{where} is not a braingan export folder (its {CONFIG} is not a braingan export's)")
    version = int(config.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ExportError(f"{where} was written by a newer braingan (export format {version}); upgrade")
    files = dict(config.get("files") or {})
    if WEIGHTS not in files:
        raise ExportError(f"{where}: {CONFIG} lists no {WEIGHTS}")
    for name, digest in files.items():
        if Path(name).name != name or name in (".", "..", CONFIG):
            raise ExportError(f"{where}: {CONFIG} lists {name!r}, which is not a file name of the folder")
        path = folder / name
        if not path.is_file():
            raise ExportError(f"{where}: {name} is missing (config.json lists it)")
        if file_digest(path) != digest:
            raise ExportError(f"{where}: {name} was altered (its SHA-256 differs from config.json's)")
    network = config.get("network") or {}
    net_dict = dict(network.get("config") or {})
    return ExportInfo(
        folder=folder,
        format_version=version,
        net=NetworkConfig.from_dict(net_dict),
        net_dict=net_dict,
        class_names=[str(n) for n in config.get("class_names") or []],
        geometry_dict=config.get("geometry"),
        source=dict(config.get("source") or {}),
        init=config.get("init"),
        torchscript=config.get("torchscript"),
        files=files,
        data=dict(config.get("data") or {}),
    )


def load_export(
    folder: str | os.PathLike, map_location: str | torch.device = "cpu", setting: str = "ckpt"
) -> tuple[Generator, ExportInfo]:
    """The exported generator (eval mode, no gradients) and its ExportInfo; checksums verified first."""
    info = read_export_info(folder, setting)
    G = Generator(info.net)
    state = load_tensors(info.folder / WEIGHTS)
    try:
        G.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ExportError(f"{setting}={info.folder}: {WEIGHTS} does not fit its {CONFIG} ({first})") from None
    return G.to(map_location).eval().requires_grad_(False), info


# ---------------------------------------------------------------------------------------------
# Writing


class _Sampler(torch.nn.Module):
    """z -> images in [-1, 1], the fixed noise, no truncation (what generator.pt computes)."""

    def __init__(self, G: Generator):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z, None, noise_mode="const")


class _ConditionalSampler(_Sampler):
    """(z, one-hot c) -> images in [-1, 1]."""

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.G(z, c, noise_mode="const")


def _inputs(G: Generator, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    if G.c_dim == 0:
        return (z,)
    labels = torch.randint(G.c_dim, (n,), generator=gen)
    return z, torch.nn.functional.one_hot(labels, G.c_dim).float()


def write_torchscript(G: Generator, path: Path, tolerance: float = TOLERANCE, check: int = 4) -> dict:
    """Traces G (z [, c] -> image) into `path` and checks it against the eager G on new random inputs
    of another batch size; the record for config.json. Refused when the difference exceeds `tolerance`."""
    sampler = (_ConditionalSampler if G.c_dim else _Sampler)(G).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit's deprecation notices, and its tracer's note that shapes become constants (they are)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(sampler, _inputs(G, 2, seed=0), check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
        inputs = _inputs(G, check, seed=1)
        diff = float((loaded(*inputs) - sampler(*inputs)).abs().max())
    if not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise UsageError(
            f"the TorchScript generator differs from the eager one by {diff:.3g} (tolerance {tolerance:g}); "
            "export without torchscript=true"
        )
    inputs_doc = "z [N, z_dim]" + (", c [N, c_dim] one-hot" if G.c_dim else "")
    return {
        "file": TORCHSCRIPT,
        "inputs": inputs_doc,
        "output": "images [N, img_channels, R, R] in [-1, 1] (noise_mode const, no truncation)",
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "checked_on": f"{check} random inputs (seed 1), batch size other than the traced 2",
        "torch": torch.__version__,
    }


def default_out(ckpt: str | os.PathLike) -> Path:
    """<run>/export of the checkpoint's run (<run>/checkpoints/x.ckpt), or export/ beside a loose file."""
    from .rundir import RunDir

    return RunDir.of_checkpoint(ckpt).export


def write_export(
    ckpt: str | os.PathLike,  # a braingan training checkpoint
    out: str | os.PathLike | None = None,  # the export folder; None = <run>/export
    torchscript: bool = False,  # also generator.pt (TorchScript), checked against the eager model
    tolerance: float = TOLERANCE,  # of that check
    manifest: bool = True,  # also manifest.csv (slices, subjects, splits; paths relative to the data folder)
) -> ExportInfo:
    """Writes the export folder of `ckpt`'s G_ema and returns its (re-read, verified) ExportInfo.

    `out` must be new, empty or an earlier export (whose files are replaced). config.json is
    written last, so a folder without it is not an export.
    """
    from .checkpoint import load_generator, read_info
    from .model_card import model_card

    if Path(ckpt).is_dir():
        raise UsageError(not_a_checkpoint_file(ckpt))
    info = read_info(ckpt)  # one line for a file that is not a checkpoint, before anything is unpickled
    folder = Path(out).expanduser() if out not in (None, "") else default_out(info.path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"out={folder} is a file; name a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / CONFIG).is_file():
        raise UsageError(f"out={folder} holds other files and is not an export; name a new or empty folder")
    G = load_generator(info.path, "G_ema")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).unlink(missing_ok=True)  # an earlier export: not one until the new config.json is written
    listing = RunDir(folder).manifest
    for name in (WEIGHTS, TORCHSCRIPT, CARD, listing.name):
        (folder / name).unlink(missing_ok=True)
    save_tensors(G.state_dict(), folder / WEIGHTS, {"format": "pt", "network": GENERATOR_CLASS, "which": "G_ema"})
    record = write_torchscript(G, folder / TORCHSCRIPT, tolerance) if torchscript else None
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": {"class": GENERATOR_CLASS, "config": info.net_dict},
        "class_names": info.class_names,
        "resolution": info.resolution,
        "img_channels": info.channels,
        "geometry": info.data.get("geometry") or None,
        "source": {
            "checkpoint": str(info.path.resolve()),
            "kimg": info.kimg,
            "cur_nimg": info.cur_nimg,
            "checkpoint_format_version": info.format_version,
            "which": "G_ema",
        },
        "init": info.init,
        "torchscript": record,
        "data": data_record(info),
    }
    has_manifest = manifest and info.run.manifest.is_file()
    (folder / CARD).write_text(model_card(info, config, G, has_manifest))
    if has_manifest:
        from .data.manifest import read_manifest, write_manifest

        write_manifest(read_manifest(info.run.manifest), listing, root=config["data"].get("root"))
    names = [WEIGHTS, CARD] + ([TORCHSCRIPT] if record else []) + ([listing.name] if has_manifest else [])
    config["files"] = {name: file_digest(folder / name) for name in names}
    tmp = folder / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
    tmp.replace(folder / CONFIG)
    return read_export_info(folder, "out")


def data_record(info) -> dict:
    """config.json's "data" of a checkpoint's CheckpointInfo: what finds its real slices again."""
    settings = info.run_config or {}
    record: dict[str, Any] = {
        "dataset": info.dataset_name,
        "layout": info.data.get("layout"),
        "root": str(Path(info.data["root"]).expanduser().absolute()) if info.data.get("root") else None,
        "splits": info.splits,
        "fit": info.fit,
    }
    if settings.get("dataset/demo_subjects") is not None:
        record["demo_subjects"] = int(settings["dataset/demo_subjects"])
    return record
