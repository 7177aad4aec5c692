"""Decoding encoded images (JPEG, PNG, WebP, ...) into uint8 RGB tensors, refusing bombs first.

Training and serving both decode here, so a bundle sees pixels exactly as its model did.
The pixel limit is checked on the header, before any pixel is decoded; Pillow's own global
limit is left alone (changing process-wide settings at import time is not ours to do).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "MAX_SIDE", "ImageDecodeError", "decode_image", "encode_mask_png", "open_image"]

MAX_PIXELS = 40_000_000  # 40 megapixels: larger than any camera image we expect, far below a bomb
MAX_SIDE = 16_384  # a 1×40M "image" passes the pixel limit, yet resizing it needs tens of GB


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode, or declare too many pixels."""


def open_image(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A lazily opened image whose declared size has been checked; nothing decoded yet."""
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"not a decodable image ({err})") from err
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image declares {width}×{height} pixels")
    if max(width, height) > MAX_SIDE:
        raise ImageDecodeError(
            f"image declares {width}×{height} pixels, a side over the limit of {MAX_SIDE:,}"
        )
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image declares {width}×{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"
        )
    return image


def decode_image(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W). Grayscale, palette, CMYK, RGBA and 16-bit images are converted."""
    image = open_image(data, max_pixels)
    try:
        rgb = np.asarray(_to_8_bits(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"image data is truncated or corrupt ({err})") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _to_8_bits(image: Image.Image) -> Image.Image:
    """Pillow clips 16-bit grayscale at 255 when converting; scale it down instead."""
    if image.mode not in ("I;16", "I;16L", "I;16B", "I"):
        return image
    pixels = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray((pixels >> 8).astype(np.uint8), mode="L")


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A (height, width) uint8 class-id mask as an 8-bit grayscale PNG: lossless, and fast to write
    (it is sent, not stored)."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, np.uint8), mode="L").save(out, format="PNG", compress_level=1)
    return out.getvalue()
