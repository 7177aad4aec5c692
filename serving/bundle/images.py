"""The one image preprocessing of training and serving: decode, resize, scale (Pillow + numpy).

Training's loaders and every serving path (the server, `Bundle.predict`, TorchServe) decode,
squish and scale here, so a bundle sees pixels exactly as its model did. Only a model PyTorch runs
on a GPU may prepare there instead (`serving.bundle.device_images`). The pixel limit is checked on
the header, before any pixel is decoded; Pillow's own global limit is left alone (changing
process-wide settings at import time is not ours to do).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "ImageDecodeError",
    "decode_image",
    "decode_pixels",
    "encode_mask_png",
    "normalize_pixels",
    "open_image",
    "resize_pixels",
    "scale_pixels",
    "unit_pixels",
]

Pixels = TypeVar("Pixels", np.ndarray, "torch.Tensor")

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


def decode_pixels(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 array (H, W, 3). Grayscale, palette, CMYK, RGBA and 16-bit images are converted."""
    image = open_image(data, max_pixels)
    try:
        return np.array(_to_8_bits(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"image data is truncated or corrupt ({err})") from err


def decode_image(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W), for training's transforms: `decode_pixels`, channels first."""
    import torch  # only training and the GPU path hold tensors; the ONNX path never imports torch

    return torch.from_numpy(decode_pixels(data, max_pixels)).permute(2, 0, 1)


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C) → (size, size, C), squished, with Pillow's antialiased bilinear filter: the
    one resize of training's loaders and of serving."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))


def scale_pixels(pixels: Pixels, mean: Sequence[float], std: Sequence[float]) -> Pixels:
    """uint8 pixels channels first, (C, H, W) or (N, C, H, W) → float32 `(x / 255 − mean) / std`:
    one image in numpy (serving), or a batch of tensors on any device (training's loaders)."""
    return normalize_pixels(unit_pixels(pixels), mean, std)


def unit_pixels(pixels: Pixels) -> Pixels:
    """uint8 → float32 in [0, 1] (a fresh, C-ordered copy: callers scale it in place)."""
    if isinstance(pixels, np.ndarray):
        x = pixels.astype(np.float32, order="C")
        x /= 255
        return x
    return pixels.float().div_(255)


def normalize_pixels(x: Pixels, mean: Sequence[float], std: Sequence[float]) -> Pixels:
    """float32 in [0, 1], channels first → `(x − mean) / std`, in place."""
    if isinstance(x, np.ndarray):
        x -= np.asarray(mean, np.float32).reshape(-1, 1, 1)
        x /= np.asarray(std, np.float32).reshape(-1, 1, 1)
        return x
    import torch

    x.sub_(torch.tensor(mean, device=x.device).view(-1, 1, 1))
    return x.div_(torch.tensor(std, device=x.device).view(-1, 1, 1))


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
