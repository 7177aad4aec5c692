"""Preparing a request's images on the inference device: JPEGs decoded there (nvJPEG on CUDA),
every image resized and normalized there, so the host only reads headers and copies encoded bytes.

On a GPU host the CPU's JPEG decode and resize cost more than the network's forward pass; moving
them to the GPU also uploads a few hundred KB of JPEG per image instead of 600 KB of float32. The
pixel limits are checked on each header first, exactly as `serving.bundle.images.decode_image` does, and
images that are not baseline RGB or grayscale JPEGs (PNG, WebP, CMYK, 16-bit) are decoded on the
host by that same function and uploaded as uint8: the answer never depends on the format.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import resize

from serving.bundle.flow import Size, pad_to_largest
from serving.bundle.images import MAX_PIXELS, ImageDecodeError, decode_image, open_image, scale_pixels
from serving.bundle.pipeline import ImagePreprocess

__all__ = ["ItemDecodeError", "prepare_on_device"]

DEVICE_DECODED_MODES = ("RGB", "L")


class ItemDecodeError(ImageDecodeError):
    """Image `index` of a batch could not be decoded; the message says why."""

    def __init__(self, index: int, error: ImageDecodeError) -> None:
        super().__init__(str(error))
        self.index = index


def prepare_on_device(
    preprocess: ImagePreprocess,
    images: Sequence[bytes],
    device: torch.device | str,
    max_pixels: int = MAX_PIXELS,
) -> tuple[torch.Tensor, list[Size]]:
    """Encoded images → one normalized float32 batch (N, 3, size, size) on `device`, and each
    image's original (height, width)."""
    on_device: dict[int, bytes] = {}
    decoded: dict[int, torch.Tensor] = {}
    for index, data in enumerate(images):
        try:
            header = open_image(data, max_pixels)
            if header.format == "JPEG" and header.mode in DEVICE_DECODED_MODES:
                on_device[index] = data
            else:
                decoded[index] = decode_image(data, max_pixels).to(device, non_blocking=True)
        except ImageDecodeError as err:
            raise ItemDecodeError(index, err) from err
    if on_device:
        decoded.update(zip(on_device, _decode_jpegs(list(on_device.items()), device), strict=True))
    ordered = [decoded[index] for index in range(len(images))]
    return _prepared(preprocess, ordered), [(int(image.shape[-2]), int(image.shape[-1])) for image in ordered]


def _prepared(preprocess: ImagePreprocess, images: list[torch.Tensor]) -> torch.Tensor:
    """uint8 (3, H, W) images on the device → the normalized float32 batch, there: torchvision's
    antialiased bilinear resize (the device twin of `resize_pixels`, equal within a grey level) and
    the host's `scale_pixels`."""
    mean, std = preprocess.mean, preprocess.std
    if preprocess.resize == "pad":  # normalized first, so the padding is 0: the mean colour
        return pad_to_largest([scale_pixels(image, mean, std) for image in images], preprocess.stride)
    side = [preprocess.size, preprocess.size]
    return scale_pixels(torch.stack([resize(image, side, antialias=True) for image in images]), mean, std)


def _decode_jpegs(jpegs: list[tuple[int, bytes]], device: torch.device | str) -> list[torch.Tensor]:
    """One batched decode; if it fails, each image alone, so the error names the broken one."""
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for _, data in jpegs]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass
    images = []
    for (index, _), data in zip(jpegs, encoded, strict=True):
        try:
            images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as err:  # torchvision's message starts with its source file's path
            reason = str(err).rsplit(", ", 1)[-1]
            corrupt = ImageDecodeError(f"image data is truncated or corrupt ({reason})")
            raise ItemDecodeError(index, corrupt) from err
    return images
