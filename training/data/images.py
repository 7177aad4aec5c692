"""Reading images from disk as uint8 CHW tensors, with errors that name the file and its origin.

Decoding itself is `serving.bundle.images.decode_image`: the server decodes exactly as training did.
"""

from __future__ import annotations

from pathlib import Path

import torch

from serving.bundle.images import ImageDecodeError, decode_image
from training.errors import DataError

__all__ = ["read_image"]


def read_image(path: Path, origin: str | None = None) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W)."""
    where = f"{origin}: " if origin and origin != str(path) else ""
    try:
        return decode_image(path.read_bytes())
    except FileNotFoundError as err:
        raise DataError(f"{where}image {path} does not exist") from err
    except (ImageDecodeError, OSError) as err:
        raise DataError(f"{where}cannot read image {path}: {err}") from err
