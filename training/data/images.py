"""Reading images as uint8 CHW tensors, with errors that name the file and where it was listed.

Pillow decodes (torchvision's decoders are deprecated from 0.29 on); grayscale, palette, CMYK,
16-bit and RGBA images all arrive as 3-channel RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from training.errors import DataError

__all__ = ["read_image"]


def read_image(path: Path, origin: str | None = None) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W)."""
    where = f"{origin}: " if origin and origin != str(path) else ""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(f"{where}image {path} does not exist") from err
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{where}cannot read image {path}: {err}") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)
