"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# The temporary files of `temporary_file`: .<final name>.<mkstemp's random part>.tmp, beside the final file.
TEMPORARY_NAME = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]{6,}\.tmp$")


def temporary_file(path: Path) -> Path:
    """A new empty file beside `path` for writing it atomically (same folder, so the rename never copies)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in the same folder; renames it to `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temporary_file(path)
    try:
        yield tmp_path
        plain_mode(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def null_path(path: str | os.PathLike) -> Iterator[Path]:
    """The twin of `atomic_path` for ranks that do not write: yields `path` itself and renames nothing."""
    yield Path(path)


def plain_mode(path: str | os.PathLike) -> None:
    """Gives a file made by mkstemp (0600) the mode a plain open() would (0666 less the umask).

    Group members on a shared cluster folder, or every user of a shared BRAINGAN_CACHE, read
    each other's checkpoints, metrics and caches.
    """
    os.chmod(path, 0o666 & ~_umask())


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files that an interrupted atomic write left in `folder`; returns them.

    Call it only where no other process is writing (a run's own folder at its start).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if p.is_file() and TEMPORARY_NAME.match(p.name))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def is_no_space(error: BaseException) -> bool:
    """Whether an OSError says the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def unused_path(path: str | os.PathLike) -> Path:
    """`path`, or the first of <stem>-1<suffix>, <stem>-2<suffix>, ... that does not exist yet."""
    path = Path(path)
    candidate, k = path, 1
    while candidate.exists():
        candidate, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return candidate


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def kimg_tag(kimg: float, every_kimg: float | None = None) -> str:
    """File-name tag of a training time (no '=', sorts in time order).

    000050 when the cadence `every_kimg` is whole kimg; 000050.000 / 000000.128 when it is
    fractional, so every name of one series has the same shape.
    """
    fractional = every_kimg is not None and abs(every_kimg - round(every_kimg)) > 1e-9
    if not fractional and abs(kimg - round(kimg)) < 1e-9:
        return f"{int(round(kimg)):06d}"
    return f"{kimg:010.3f}"


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read `chunk` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def update_with_files(digest, paths: Iterable[str | os.PathLike]) -> None:
    """Feed each file's absolute path, size and mtime (ns) into a hashlib digest, in order.

    What cache keys are made of: touching, replacing, adding, removing or reordering a file
    changes the digest. A missing file counts as size and mtime -1 (its reader reports it).
    """
    for path in paths:
        absolute = os.path.abspath(path)
        try:
            stat = os.stat(absolute)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(b"\0" + os.fsencode(absolute) + f"\0{size}\0{mtime}".encode())


def walk_visible(root: str | os.PathLike[str]) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) below root, following symlinks, skipping hidden folders and loops."""
    seen: set[str] = set()
    for here, dirs, files in os.walk(os.fspath(root), followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a symlink loop: do not walk the same folder twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield here, files
