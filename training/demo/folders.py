"""Demo data sets are written whole or not at all: built in a hidden sibling, then renamed into place."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from training.errors import ConfigError, DataError

__all__ = ["check_target", "publish_folder", "sibling"]


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse early, before any work, to replace a user's folder unless asked to."""
    if out.name in ("", ".", ".."):
        raise ConfigError(f"scene set folder must have a name of its own, got {str(out)!r}")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; pass a folder path for the scene set")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty; pass overwrite=True to replace it")


def publish_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished `tmp` folder to `out`, replacing an old `out` only when allowed."""
    check_target(out, overwrite)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.is_dir():
        old = sibling(out, "old")
        out.replace(old / out.name)
        tmp.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.replace(out)


def sibling(out: Path, role: str) -> Path:
    """Make a fresh hidden folder next to `out`, on the same file system so a rename is atomic.

    Not `tempfile.mkdtemp`: its 0700 mode would carry over to the published folder.
    """
    folder = out.with_name(f".{out.name}.{role}-{uuid.uuid4().hex[:12]}")
    folder.mkdir()
    return folder
