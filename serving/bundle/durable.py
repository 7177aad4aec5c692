"""Durable, atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    The file gets the permissions any new file would (0666 less the umask), not mkstemp's private
    0600: a bundle's manifest must be readable by a server running as another user (the image's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _read_umask() -> int:
    """The process's umask. Reading it means setting it, so it is read once, at import, before any
    thread of ours could create a file in the instant it is changed."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
