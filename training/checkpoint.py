"""Checkpoints (and metrics files) written atomically: a crash mid-write leaves the previous file whole."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from serving.bundle.durable import write_atomically
from training.errors import DataError

__all__ = ["atomic_save", "load_checkpoint", "write_json_atomic"]


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` to `path` atomically and durably."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue())


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


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as indented JSON at `path`, atomically and durably."""
    write_atomically(path, (json.dumps(value, indent=2) + "\n").encode("utf-8"))
