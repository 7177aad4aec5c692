"""Checkpoints written atomically: a crash mid-write leaves the previous file whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from training.errors import DataError

__all__ = ["atomic_save", "load_checkpoint"]


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` into a temporary file beside `path`, fsync it, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `atomic_save`; only tensors and plain data are unpickled."""
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise DataError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(f"{path}: not a checkpoint written by train-kit")
    return state
