"""Atomic file writes: a crash never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in the same folder; renames it to `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def kimg_tag(kimg: float, every_kimg: float | None = None) -> str:
    """File-name tag of a training time (no '=', sorts in time order).

    000050 when the cadence `every_kimg` is whole kimg; 000050.000 / 000000.128 when it is
    fractional, so every name of one series has the same shape.
    """
    fractional = every_kimg is not None and abs(every_kimg - round(every_kimg)) > 1e-9
    if not fractional and abs(kimg - round(kimg)) < 1e-9:
        return f"{int(round(kimg)):06d}"
    return f"{kimg:010.3f}"
