"""Reading images as uint8 CHW tensors, with errors that name the file and where it was listed."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image

from training.errors import DataError

__all__ = ["read_image"]


def read_image(path: Path, origin: str | None = None) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W); grayscale, palette and RGBA images are converted."""
    where = f"{origin}: " if origin and origin != str(path) else ""
    try:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        return decode_image(data, mode=ImageReadMode.RGB)
    except FileNotFoundError as err:
        raise DataError(f"{where}image {path} does not exist") from err
    except (RuntimeError, ValueError, OSError) as err:
        raise DataError(f"{where}cannot read image {path}: {err}") from err

