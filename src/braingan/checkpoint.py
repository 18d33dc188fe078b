"""Read training checkpoints and rebuild networks from a checkpoint file alone (no Hydra, no config files).

Every reader goes through `read_checkpoint`, which says in one line what a file is when it is not
a braingan checkpoint (a text file, a PNG, a manifest ...), and for a damaged one (a truncated
or partly written file) names the newest intact checkpoint of the same run.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .nn.config import NetworkConfig
from .nn.synthesis import Generator
from .utils.errors import MissingFileError, UsageError

# What a training checkpoint holds besides Lightning's own entries (state_dict, optimizer states):
# hyper_parameters {"net", "train", "data"} and our "braingan" entry (kimg counter, RNG, run settings).
REQUIRED_ENTRIES = ("state_dict", "hyper_parameters", "braingan")
SNAPSHOT_GLOB = "kimg_*.ckpt"  # checkpoints/kimg_<kimg>.ckpt, kept every schedule.snapshot_kimg
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(UsageError):
    """The file is not a braingan checkpoint, or it is damaged; the message says which and what to use."""


class _Unreadable(Exception):
    """A file that is not, or no longer, a checkpoint; `damaged` when it was meant to be one."""

    def __init__(self, reason: str, damaged: bool):
        super().__init__(reason)
        self.damaged = damaged


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False,
                    setting: str = "ckpt") -> dict:
    """The checkpoint dict of a braingan training checkpoint, checked.

    `mmap=True` maps the tensors instead of reading them (cheap when only the small entries are
    needed). `setting` is the command-line key that named the file (ckpt, resume), used in the
    advice of the error messages. Our checkpoints hold RNG states (numpy arrays), so they are
    not weights-only files; a file that is not a zip archive is refused before anything is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{setting}={path}: no such checkpoint file")
    try:
        return _read(path, map_location, mmap)
    except _Unreadable as error:
        if not error.damaged:
            raise CheckpointError(f"{setting}={path} is not a braingan checkpoint: {error}") from None
        raise CheckpointError(_damaged(path, str(error), setting)) from None


def _read(path: Path, map_location, mmap: bool) -> dict:
    kind = describe_file(path)
    if kind is not None:
        raise _Unreadable(kind if kind.startswith("an empty file") else f"it is {kind}", damaged=kind.startswith("an empty file"))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0].split(". ")[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise _Unreadable(f"PyTorch cannot read it: {reason}", damaged=True) from None
    missing = [k for k in REQUIRED_ENTRIES if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise _Unreadable(f"it is a PyTorch file without the {', '.join(repr(k) for k in missing)} "
                          "entry of a braingan training checkpoint", damaged=False)
    return ckpt


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


def newest_intact_checkpoint(folder: Path, exclude: Path | None = None) -> Path | None:
    """The newest checkpoint in a run's checkpoints/ folder whose archive is whole, other than `exclude`.

    Snapshots are tried newest first (their kimg tags sort in time order), then last.ckpt. Only
    the zip structure is read: nothing is unpickled from files the user did not name.
    """
    exclude = exclude.resolve() if exclude is not None else None
    candidates = sorted(folder.glob(SNAPSHOT_GLOB), reverse=True) + [folder / "last.ckpt"]
    for candidate in candidates:
        if not candidate.is_file() or candidate.resolve() == exclude:
            continue
        names = _zip_names(candidate)
        if names is not None and _torch_archive(names):
            return candidate
    return None


def _damaged(path: Path, reason: str, setting: str) -> str:
    message = f"{setting}={path} is damaged ({reason})"
    if path.parent.name != "checkpoints":  # not in a run folder: there are no siblings to offer
        return message
    intact = newest_intact_checkpoint(path.parent, exclude=path)
    if intact is None:
        return message + f"; no intact checkpoint found beside it in {path.parent}"
    tag = intact.stem[len("kimg_"):] if intact.stem.startswith("kimg_") else None
    when = f" ({float(tag):g} kimg)" if tag and tag.replace(".", "").isdigit() else ""
    return message + f"; the newest intact checkpoint of this run is {intact}{when}: use {setting}={intact}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict, fully read (see `read_checkpoint`)."""
    return read_checkpoint(path, map_location)


def load_generator(path: str | os.PathLike, which: str = "G_ema", map_location: str | torch.device = "cpu") -> Generator:
    """The generator stored in a training checkpoint (`G_ema` by default, or `G`), in eval mode."""
    ckpt = read_checkpoint(path, map_location)
    cfg = NetworkConfig.from_dict(ckpt["hyper_parameters"]["net"])
    G = Generator(cfg)
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    G.load_state_dict(state)
    return G.eval().requires_grad_(False)


def checkpoint_kimg(path: str | os.PathLike) -> float:
    """Training time stored in a checkpoint, in kimg (the file is memory-mapped: nothing else is read)."""
    return float(read_checkpoint(path, mmap=True)["braingan"]["cur_nimg"]) / 1000.0


def load_data_info(path: str | os.PathLike) -> dict:
    """What a checkpoint knows about its training data, without building any network.

    Returns {"class_names": [...] (label order; [] when unlabelled), "geometry": Geometry or
    None (checkpoints written before the fit policy existed)}. The file is memory-mapped, so
    only the small hyperparameter dict is read from disk.
    """
    from .data.fit import Geometry

    ckpt = read_checkpoint(path, mmap=True)
    data = ckpt.get("hyper_parameters", {}).get("data") or {}
    geometry = data.get("geometry")
    return {
        "class_names": [str(name) for name in data.get("class_names") or []],
        "geometry": Geometry.from_dict(geometry) if geometry else None,
    }
