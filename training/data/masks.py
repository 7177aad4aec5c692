"""Segmentation targets: per-pixel class codes read from mask images (CamVid's `*_P.png`).

A mask is a single-channel image whose pixel values index `codes` (`codes.txt`, one per line).
Masks are read and checked once, when the data is labelled; in the loaders each one travels as a
`tv_tensors.Mask`, so geometric transforms move it with its image (nearest-neighbour, never
blended) and lighting transforms leave it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from training.data.items import Items
from training.errors import DataError, LabelError

__all__ = ["MaskEncoder", "MaskFromFunction", "MaskInFolder", "read_codes", "read_mask"]


def read_codes(path: Path) -> list[str]:
    """The codes of `codes.txt`, in order; a mask pixel of value i means `codes[i]`."""
    try:
        codes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError as err:
        raise DataError(f"codes file {path} does not exist") from err
    if not codes or len(codes) > 256:
        raise DataError(f"{path}: expected 1 to 256 codes, one a line; found {len(codes)}")
    return codes


def read_mask(path: Path, n_codes: int, origin: str = "") -> torch.Tensor:
    """A (H, W) uint8 tensor of codes, every value checked to be below `n_codes`."""
    where = f"{origin}: " if origin else ""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I;16", "I"):
                raise LabelError(f"{where}mask {path} is {image.mode}; a mask has one channel (L or P)")
            pixels = np.asarray(image)
    except FileNotFoundError as err:
        raise LabelError(f"{where}mask {path} does not exist") from err
    except (UnidentifiedImageError, OSError) as err:
        raise LabelError(f"{where}cannot read mask {path}: {err}") from err
    top = int(pixels.max()) if pixels.size else 0
    if top >= n_codes:
        raise LabelError(
            f"{where}mask {path} holds code {top}, but there are only {n_codes} codes (0..{n_codes - 1})"
        )
    return torch.from_numpy(pixels.astype(np.uint8))


@dataclass
class MaskEncoder:
    """Mask files ↔ a (N, H, W) uint8 tensor of codes; the classes are the codes."""

    classes: list[str]

    def encode(self, labels: Sequence[Path], items: Items) -> torch.Tensor:
        masks = [read_mask(Path(p), len(self.classes), items.origin(i)) for i, p in enumerate(labels)]
        shapes = {tuple(m.shape) for m in masks}
        if len(shapes) > 1:
            raise DataError(f"masks differ in size ({sorted(shapes)[:3]}...); resize them to one size")
        return torch.stack(masks) if masks else torch.empty(0, 0, 0, dtype=torch.uint8)

    def decode(self, target: torch.Tensor) -> torch.Tensor:
        return target

    def wrap(self, target: torch.Tensor, canvas: tuple[int, int]) -> Any:
        if tuple(target.shape) != canvas:
            raise DataError(
                f"image is {canvas} but its mask is {tuple(target.shape)} (height, width); they must match"
            )
        return tv_tensors.Mask(target)


@dataclass(frozen=True)
class MaskFromFunction:
    """Each image's mask file is a function of the image's path (fastai's `get_y_fn`)."""

    fn: Callable[[Path], Path]
    codes: Sequence[str]

    def __call__(self, items: Items) -> list[Path]:
        masks = []
        entries: Sequence[Path | str] = items.items
        for i, item in enumerate(entries):
            try:
                masks.append(Path(self.fn(Path(item))))
            except Exception as err:  # a user's function: report which item it failed on
                raise LabelError(f"{items.origin(i)}: mask function failed: {err}") from err
        return masks

    def encoder(self, train_labels: Sequence[Any]) -> MaskEncoder:
        return MaskEncoder(list(self.codes))


@dataclass(frozen=True)
class MaskInFolder:
    """CamVid's layout as a `get_y_fn`: `images/x.jpg` → `<folder>/x<suffix>` (`labels/x_P.png`)."""

    folder: Path
    suffix: str = "_P.png"

    def __call__(self, image: Path) -> Path:
        return self.folder / f"{image.stem}{self.suffix}"
