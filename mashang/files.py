"""Durable file writes: a file is either its old self or its new self, never half of each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace `path` whole: write a temp file beside it, fsync it, rename it over `path`, then
    fsync the folder so that the rename itself survives a power cut.

    The temp file is created 0600 (mkstemp), and the file keeps that mode unless `mode` is
    given: the temp file is then set to `mode` before any data is written, so a secret written
    with mode 0o600 is never readable by others, and the file appears at `path` with its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
