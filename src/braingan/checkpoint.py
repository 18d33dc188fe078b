"""The checkpoint format: what a braingan training checkpoint holds, how it is written and read.

A checkpoint is Lightning's dict (state_dict, optimizer states, ...) plus

    hyper_parameters  {NET: NetworkConfig.to_dict(), TRAIN: TrainConfig.to_dict(), DATA: data_info}
    ENTRY ("braingan") {FORMAT_VERSION_KEY, CUR_NIMG, BATCH_IDX, NONFINITE_TOTAL, RNG,
                        RUN_CONFIG (optional), INIT (fine-tuned runs), RNG_PER_RANK and RANK_DIGESTS
                        (several processes)}

Format versions: 1 = everything written before the entry held FORMAT_VERSION_KEY; 2 = the same
fields with the version stored. A file of a newer version is refused in one line.

This module is the only one that knows those keys: `write_training_state` and `training_state`
for the module's checkpoint hooks, `read_info` (a typed `CheckpointInfo`) for everything but the
weights, `load_generator` for G. Every reader goes through `read_checkpoint`, which says in one
line what a file is when it is not a braingan checkpoint (a text file, a PNG, a manifest ...),
and for a damaged one (a truncated or partly written file) names the newest intact checkpoint
of the same run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .nn.config import NetworkConfig
from .nn.discriminator import Discriminator
from .nn.synthesis import Generator
from .rundir import RunDir, snapshot_tag
from .utils.errors import MissingFileError, UsageError

FORMAT_VERSION = 2  # written into every new checkpoint; a file without it is version 1

# Our entry in Lightning's checkpoint dict and its fields.
ENTRY = "braingan"
FORMAT_VERSION_KEY = "format_version"
CUR_NIMG = "cur_nimg"  # images shown to D so far (all processes)
BATCH_IDX = "batch_idx"  # training steps so far (drives the lazy regularization intervals)
NONFINITE_TOTAL = "nonfinite_total"  # steps skipped for a non-finite loss
RNG = "rng"  # rank 0's RNG states {torch, numpy, python[, cuda]}
RNG_PER_RANK = "rng_per_rank"  # every rank's RNG states (several processes only)
RANK_DIGESTS = "rank_digests"  # every rank's digests of weights and buffers (several processes only)
RUN_CONFIG = "run_config"  # the run's flattened settings (a requeued job checks it is the same run)
INIT = "init"  # a fine-tuned run: where its weights started (init=): checkpoint, kimg, data set, what was taken

# Lightning's entry of save_hyperparameters and our three dicts in it.
HYPER_PARAMETERS = "hyper_parameters"
NET, TRAIN, DATA = "net", "train", "data"

# What a training checkpoint holds besides Lightning's own entries (optimizer states ...).
REQUIRED_ENTRIES = ("state_dict", HYPER_PARAMETERS, ENTRY)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(UsageError):
    """The file is not a braingan checkpoint, or it is damaged; the message says which and what to use."""


class _Unreadable(Exception):
    """A file that is not, or no longer, a checkpoint; `damaged` when it was meant to be one."""

    def __init__(self, reason: str, damaged: bool):
        super().__init__(reason)
        self.damaged = damaged


def read_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False, setting: str = "ckpt"
) -> dict:
    """The checkpoint dict of a braingan training checkpoint, checked.

    `mmap=True` maps the tensors instead of reading them (cheap when only the small entries are
    needed). `setting` is the command-line key that named the file (ckpt, resume), used in the
    advice of the error messages. Our checkpoints hold RNG states (numpy arrays), so they are
    not weights-only files; a file that is not a zip archive is refused before anything is unpickled,
    and one written by a newer braingan (format version above FORMAT_VERSION) after it is read.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{setting}={path}: no such checkpoint file")
    try:
        ckpt = _read(path, map_location, mmap)
    except _Unreadable as error:
        if not error.damaged:
            raise CheckpointError(f"{setting}={path} is not a braingan checkpoint: {error}") from None
        raise CheckpointError(_damaged(path, str(error), setting)) from None
    _format_version(ckpt[ENTRY], f"{setting}={path}")
    return ckpt


def _read(path: Path, map_location, mmap: bool) -> dict:
    kind = describe_file(path)
    if kind is not None:
        raise _Unreadable(
            kind if kind.startswith("an empty file") else f"it is {kind}", damaged=kind.startswith("an empty file")
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = (
            str(error).strip().splitlines()[0].split(". ")[0].rstrip(".")
            if str(error).strip()
            else type(error).__name__
        )
        raise _Unreadable(f"PyTorch cannot read it: {reason}", damaged=True) from None
    missing = [k for k in REQUIRED_ENTRIES if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise _Unreadable(
            f"it is a PyTorch file without the {', '.join(repr(k) for k in missing)} "
            "entry of a braingan training checkpoint",
            damaged=False,
        )
    return ckpt


def _format_version(entry: dict, where: str) -> int:
    """The format version of our entry (1 without the key); a newer one than this code's is refused."""
    version = int(entry.get(FORMAT_VERSION_KEY, 1)) if isinstance(entry, dict) else 1
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{where} was written by a newer braingan (format {version}); upgrade")
    return version


def describe_file(path: Path) -> str | None:
    """None for what torch.save writes (or a zip archive too damaged to tell), else what the file looks like."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(ZIP_MAGIC):
        names = _zip_names(path)
        if names is None or _torch_archive(names):
            return None
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy .npz archive"
        return "a zip archive that torch.save did not write"
    if not head:
        return "an empty file (0 bytes: a write that never finished)"
    for magic, what in (
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"BM", "a BMP image"),
        (b"GIF8", "a GIF image"),
        (b"\x1f\x8b", "a gzip file (a .nii.gz volume?)"),
        (b"\x93NUMPY", "a NumPy array (.npy)"),
        (b"\x80", "a plain pickle, not a torch.save zip archive"),
    ):
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that is not a zip archive"
    first = text.splitlines()[0] if text.splitlines() else ""
    if first.startswith("path,") or "subject" in first and "," in first:
        return "a text file (CSV: a manifest.csv?)"
    if text.lstrip().startswith(("{", "[")):
        return "a text file (JSON)"
    return "a text file"


def _zip_names(path: Path) -> list[str] | None:
    """The members of a zip archive; None when its central directory cannot be read (cut short)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _torch_archive(names: list[str]) -> bool:
    return any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)


def newest_intact_checkpoint(run: RunDir, exclude: Path | None = None) -> Path | None:
    """The newest checkpoint in a run's checkpoints/ folder whose archive is whole, other than `exclude`.

    Snapshots are tried newest first (their kimg tags sort in time order), then last.ckpt. Only
    the zip structure is read: nothing is unpickled from files the user did not name.
    """
    exclude = exclude.resolve() if exclude is not None else None
    candidates = [*reversed(run.snapshots()), run.last]
    for candidate in candidates:
        if not candidate.is_file() or candidate.resolve() == exclude:
            continue
        names = _zip_names(candidate)
        if names is not None and _torch_archive(names):
            return candidate
    return None


def _damaged(path: Path, reason: str, setting: str) -> str:
    message = f"{setting}={path} is damaged ({reason})"
    if not RunDir.in_run(path):  # not in a run's checkpoints/ folder: there are no siblings to offer
        return message
    intact = newest_intact_checkpoint(RunDir(path.parent.parent), exclude=path)
    if intact is None:
        return message + f"; no intact checkpoint found beside it in {path.parent}"
    tag = snapshot_tag(intact)
    when = f" ({float(tag):g} kimg)" if tag and tag.replace(".", "").isdigit() else ""
    return message + f"; the newest intact checkpoint of this run is {intact}{when}: use {setting}={intact}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict, fully read (see `read_checkpoint`)."""
    return read_checkpoint(path, map_location)


# ---------------------------------------------------------------------------------------------
# Writing and reading our entry (the LightningModule's checkpoint hooks)


def hyperparameters(net: dict, train: dict, data: dict) -> dict:
    """What StyleGAN2Module saves with save_hyperparameters: plain dicts, so the networks rebuild from the file alone."""
    return {NET: dict(net), TRAIN: dict(train), DATA: dict(data)}


def write_training_state(
    checkpoint: dict,  # Lightning's checkpoint dict, filled in place
    *,
    cur_nimg: int,  # images shown to D so far (all processes)
    batch_idx: int,  # training steps so far
    nonfinite_total: int,  # steps skipped for a non-finite loss
    rng: dict,  # rank 0's RNG states
    run_config: dict | None = None,  # the run's flattened settings; None = not stored
    init: dict | None = None,  # where a fine-tuned run started (experiment/finetune.py init_record); None = not one
    rng_per_rank: list[dict] | None = None,  # every rank's RNG states; None = one process
    rank_digests: list[dict] | None = None,  # every rank's weight digests; None = one process
) -> None:
    """Our entry of a checkpoint, in the current format (FORMAT_VERSION)."""
    entry: dict[str, Any] = {
        FORMAT_VERSION_KEY: FORMAT_VERSION,
        CUR_NIMG: int(cur_nimg),
        BATCH_IDX: int(batch_idx),
        NONFINITE_TOTAL: int(nonfinite_total),
        RNG: rng,
    }
    if run_config is not None:
        entry[RUN_CONFIG] = run_config
    if init is not None:
        entry[INIT] = init
    if rng_per_rank is not None:
        entry[RNG_PER_RANK] = rng_per_rank
    if rank_digests is not None:
        entry[RANK_DIGESTS] = rank_digests
    checkpoint[ENTRY] = entry


@dataclass(frozen=True)
class TrainingState:
    """Our entry of a checkpoint, typed; the defaults are what a checkpoint without a field means."""

    format_version: int = 1
    cur_nimg: int = 0
    batch_idx: int = 0
    nonfinite_total: int = 0
    rng: dict | None = None  # None: continue with freshly seeded generators
    rng_per_rank: list[dict] | None = None
    rank_digests: list[dict] | None = None
    run_config: dict | None = None  # None: written before checkpoints stored their settings
    init: dict | None = None  # None: not a fine-tuned run (or written before init= existed)

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000.0


def training_state(checkpoint: dict, where: str = "the checkpoint") -> TrainingState:
    """Our entry of a checkpoint dict (any version up to FORMAT_VERSION; `where` names it in the refusal of a newer one)."""
    entry = checkpoint.get(ENTRY)
    entry = entry if isinstance(entry, dict) else {}
    return TrainingState(
        format_version=_format_version(entry, where),
        cur_nimg=int(entry.get(CUR_NIMG, 0)),
        batch_idx=int(entry.get(BATCH_IDX, 0)),
        nonfinite_total=int(entry.get(NONFINITE_TOTAL, 0)),
        rng=entry.get(RNG),
        rng_per_rank=entry.get(RNG_PER_RANK),
        rank_digests=entry.get(RANK_DIGESTS),
        run_config=entry.get(RUN_CONFIG),
        init=entry.get(INIT),
    )


# ---------------------------------------------------------------------------------------------
# Everything but the weights, typed


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says besides its weights: networks, training settings, data, progress."""

    path: Path  # the checkpoint file
    format_version: int  # 1 (written before the key existed) .. FORMAT_VERSION
    net: NetworkConfig  # the networks' hyperparameters (older checkpoints: their trained properties)
    net_dict: dict  # the same as stored (keys of older or newer code included)
    train: dict  # TrainConfig.to_dict() of the run
    data: dict  # SliceDataModule.data_info(): class_names, geometry, splits
    cur_nimg: int  # images shown to D when it was written
    run_config: dict | None  # the run's flattened settings; None before checkpoints stored them
    init: dict | None = None  # a fine-tuned run: where its weights started (checkpoint, kimg, data set); else None

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000.0

    @property
    def run(self) -> RunDir:
        """The run folder the checkpoint belongs to (<run>/checkpoints/x.ckpt -> <run>)."""
        return RunDir.of_checkpoint(self.path)

    @property
    def resolution(self) -> int:
        return int(self.net.img_resolution)

    @property
    def channels(self) -> int:
        return int(self.net.img_channels)

    @property
    def geometry(self):
        """data.fit.Geometry of the training images; None for checkpoints written before the fit policy existed."""
        from .data.fit import Geometry

        geometry = self.data.get("geometry")
        return Geometry.from_dict(geometry) if geometry else None

    @property
    def fit(self) -> str:
        """The fit policy the model was trained with ('pad' before the policy was stored)."""
        return str((self.data.get("geometry") or {}).get("fit", "pad"))

    @property
    def class_names(self) -> list[str]:
        """Class names in label order; [] when unlabelled."""
        return [str(name) for name in self.data.get("class_names") or []]

    @property
    def splits(self) -> list[str]:
        """The manifest splits the run trained on (['train'] before they were stored)."""
        return [str(split) for split in self.data.get("splits") or ["train"]]

    @property
    def dataset_name(self) -> str | None:
        """The data set's name (conf/dataset/<name>.yaml), else its layout; None when neither is recorded."""
        return (self.run_config or {}).get("dataset/name") or self.data.get("layout")


def read_info(path: str | os.PathLike, setting: str = "ckpt") -> CheckpointInfo:
    """A checkpoint's `CheckpointInfo`, reading the file once, memory-mapped (the weights stay on disk)."""
    path = Path(path)
    ckpt = read_checkpoint(path, mmap=True, setting=setting)
    hp = ckpt[HYPER_PARAMETERS] or {}
    net_dict = dict(hp.get(NET) or {})
    state = training_state(ckpt, f"{setting}={path}")
    return CheckpointInfo(
        path=path,
        format_version=state.format_version,
        net=NetworkConfig.from_dict(net_dict),
        net_dict=net_dict,
        train=dict(hp.get(TRAIN) or {}),
        data=dict(hp.get(DATA) or {}),
        cur_nimg=state.cur_nimg,
        run_config=state.run_config,
        init=state.init,
    )


def load_generator(
    path: str | os.PathLike, which: str = "G_ema", map_location: str | torch.device = "cpu"
) -> Generator:
    """The generator stored in a training checkpoint (`G_ema` by default, or `G`), in eval mode."""
    ckpt = read_checkpoint(path, map_location)
    G = Generator(NetworkConfig.from_dict(ckpt[HYPER_PARAMETERS][NET]))
    G.load_state_dict(network_state(ckpt, which))
    return G.eval().requires_grad_(False)


def load_discriminator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Discriminator:
    """The discriminator stored in a training checkpoint, in eval mode (e.g. its features for projection)."""
    ckpt = read_checkpoint(path, map_location)
    D = Discriminator(NetworkConfig.from_dict(ckpt[HYPER_PARAMETERS][NET]))
    D.load_state_dict(network_state(ckpt, "D"))
    return D.eval().requires_grad_(False)


def network_state(ckpt: dict, which: str) -> dict[str, torch.Tensor]:
    """The state dict of one network (`G`, `G_ema` or `D`) of a checkpoint dict, its prefix removed."""
    prefix = which + "."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
