"""The one image preprocessing of training and serving: decode, resize, scale (Pillow + numpy).

Training's loaders and every serving path (the server, `Bundle.predict`, TorchServe) decode,
squish and scale here, so a bundle sees pixels exactly as its model did. Only a model PyTorch runs
on a GPU may prepare there instead (`serving.bundle.device_images`). The pixel limit is checked on
the header, before any pixel is decoded; Pillow's own global limit is left alone (changing
process-wide settings at import time is not ours to do).

Serving reads the header first (`read_header`: what decoding will hold, for the server's memory
budget) and then decodes and squishes without full-size copies (`decode_header`), pixel for pixel as
`decode_pixels` and `resize_pixels` do, except that a JPEG many times the model's side decodes at a
reduced scale (`DRAFT_MARGIN`). Training decodes at full size (`decode_pixels`, `decode_image`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DRAFT_MARGIN",
    "MAX_PIXELS",
    "MAX_SIDE",
    "ImageDecodeError",
    "ImageHeader",
    "decode_header",
    "decode_image",
    "decode_pixels",
    "decoding_holds",
    "encode_mask_png",
    "normalize_pixels",
    "open_image",
    "read_header",
    "resize_pixels",
    "scale_pixels",
    "unit_pixels",
]

Pixels = TypeVar("Pixels", np.ndarray, "torch.Tensor")

MAX_PIXELS = 40_000_000  # 40 megapixels: larger than any camera image we expect, far below a bomb
MAX_SIDE = 16_384  # a 1×40M "image" passes the pixel limit, yet resizing it needs tens of GB
DRAFT_MARGIN = 4
"""A large JPEG is decoded at libjpeg's reduced scale (1/2, 1/4, 1/8: averaging in the DCT, far less
memory and time) only down to this many times the side the model takes, so the antialiased squish
that follows still does the filtering: the squished pixels stay within 4 grey levels of a full
decode's, 0.6 on average (tests/serving/test_decode_memory.py measures them, and the answers)."""


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode, or declare too many pixels."""


def open_image(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A lazily opened image whose declared size has been checked; nothing decoded yet."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"not a decodable image: no format Pillow reads starts with {_first_bytes(data)}"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"not a decodable image ({_plain(err)})") from err
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
        raise ImageDecodeError(f"image data is truncated or corrupt ({_plain(err)})") from err


def _first_bytes(data: bytes | bytearray | memoryview) -> str:
    """What a client sent instead of an image, as an operator can read it back: its length and its
    first bytes in hex (a file's signature), never the object holding them."""
    head = bytes(data[:8]).hex(" ")
    return f"the {len(data):,} bytes sent ({head or 'nothing'}{' ...' if len(data) > 8 else ''})"


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _plain(err: BaseException) -> str:
    """Pillow's reason without object reprs: `<_io.BytesIO object at 0x7f...>` tells a client a heap
    address and nothing about its image."""
    return _OBJECT_REPR.sub("the image", str(err)) or type(err).__name__


@dataclass(eq=False)
class ImageHeader:
    """An image opened but not decoded, for the server to budget before decoding: Pillow's lazily
    opened `image` (a large JPEG already set to decode at a reduced scale), its (height, width) as
    sent, and `holds`, the bytes decoding and preparing it will hold at most."""

    image: Image.Image
    size: tuple[int, int]
    holds: int

    def describe(self) -> str:
        """`6300×6300 RGB PNG`: what the client sent, in an error message's words."""
        height, width = self.size
        return f"{width}×{height} {self.image.mode} {self.image.format or 'image'}"


def read_header(
    data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS, side: int | None = None
) -> ImageHeader:
    """`open_image`, and what decoding will hold. With `side` (the squish's), a JPEG at least
    `2 × DRAFT_MARGIN × side` on both sides is set to decode at a reduced scale (`Image.draft`),
    never below `DRAFT_MARGIN × side`; anything else decodes exactly as `decode_pixels` does."""
    image = open_image(data, max_pixels)
    width, height = image.size
    if side is not None and image.format == "JPEG" and min(width, height) >= 2 * DRAFT_MARGIN * side:
        image.draft(None, (DRAFT_MARGIN * side, DRAFT_MARGIN * side))
    return ImageHeader(image, (height, width), decoding_holds(image, (width, height), side))


_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Bytes per pixel of the modes Pillow stores in less than its usual 4 (RGB takes 4, as RGBX)."""
_DECODER_BUFFER = {"PNG": 0, "JPEG": 0, "BMP": 0, "PPM": 0, "GIF": 0, "WEBP": 12}
"""Bytes per pixel a format's decoder holds beside Pillow's image (libwebp hands the frame over as
bytes and keeps its canvas); a format not named here is counted 4."""
_PER_IMAGE = 256 << 10
"""A decoder's state, tables and row buffers: what a small image holds beside its pixels."""


def decoding_holds(image: Image.Image, sent: tuple[int, int], side: int | None) -> int:
    """The bytes `decode_header` holds at its peak for a (lazily opened, maybe drafted) `image`:
    the decoded image as Pillow stores it, the decoder's own buffers, the RGB copy of another
    mode, then the squish's intermediate (`side` × height) or, at native resolution, the array
    and the float32 item. tests/serving/test_decode_memory.py holds it to measured peaks."""
    width, height = image.size
    pixels = width * height
    per_pixel = _STORED.get(image.mode, 4) + _DECODER_BUFFER.get(image.format or "", 4)
    if image.mode in _SIXTEEN_BITS:
        per_pixel += 16 if image.mode == "I" else 8  # `_to_8_bits`' numpy copies, then an L image
    if image.mode != "RGB":
        per_pixel += 4  # convert("RGB") makes a copy while the original is held
    held = per_pixel * pixels + _PER_IMAGE
    if image.format == "JPEG":
        held += _jpeg_buffers(image, *sent)
    if side is None:
        return held + 12 * pixels  # the uint8 array, then the float32 item (3 + 12, less Pillow's 4)
    return held + 4 * side * height + 7 * side * side


def _jpeg_buffers(image: Image.Image, width: int, height: int) -> int:
    """libjpeg's own: a row of blocks at the sent width, and for a progressive JPEG every DCT
    coefficient (2 bytes) of every component at its sampled size, whatever the draft's scale."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    most = max(h * v for _, h, v, _ in layers)
    components = sum(h * v for _, h, v, _ in layers) / most  # 1.5 for 4:2:0 colour, 3 for 4:4:4
    row = int(2 * 16 * 2 * components * width)
    if not image.info.get("progressive"):
        return row
    return row + int(2 * components * width * height)


def decode_header(header: ImageHeader, side: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an opened image, squished to `side`×`side` with `resize_pixels`' filter
    (or at its own size): `decode_pixels` then `resize_pixels`, without their full-size copies, each
    step's input let go as soon as the next exists. The header's image is closed afterwards."""
    original = image = header.image
    try:
        image = _to_8_bits(image)
        if image.mode != "RGB":
            converted = image.convert("RGB")
            image.close()
            image = converted
        if side is not None and image.size != (side, side):
            image.load()
            squished = image.resize((side, side), Image.Resampling.BILINEAR)
            image.close()
            image = squished
        return np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"image data is truncated or corrupt ({_plain(err)})") from err
    finally:
        original.close()
        image.close()


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


_SIXTEEN_BITS = ("I;16", "I;16L", "I;16B", "I")


def _to_8_bits(image: Image.Image) -> Image.Image:
    """Pillow clips 16-bit grayscale at 255 when converting; scale it down instead."""
    if image.mode not in _SIXTEEN_BITS:
        return image
    pixels = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray((pixels >> 8).astype(np.uint8), mode="L")


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A (height, width) uint8 class-id mask as an 8-bit grayscale PNG: lossless, and fast to write
    (it is sent, not stored)."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, np.uint8), mode="L").save(out, format="PNG", compress_level=1)
    return out.getvalue()
