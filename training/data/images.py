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
            rgb = np.asarray(_to_8_bits(image).convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(f"{where}image {path} does not exist") from err
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{where}cannot read image {path}: {err}") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _to_8_bits(image: Image.Image) -> Image.Image:
    """Pillow clips 16-bit grayscale at 255 when converting; scale it down instead."""
    if image.mode not in ("I;16", "I;16L", "I;16B", "I"):
        return image
    pixels = np.asarray(image).astype(np.uint32)
    return Image.fromarray((np.clip(pixels, 0, 65535) >> 8).astype(np.uint8), mode="L")
