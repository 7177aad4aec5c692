"""The torch Dataset behind every image loader: decode, transform image and target together.

Image and target go through the transform together, so masks and points (tv_tensors via a
`Carrier`) move with the image; a plain target tensor passes through untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from training.data.images import read_image
from training.data.items import Items
from training.errors import DataError

__all__ = ["MAX_DRAWS", "Carrier", "ImageDataset"]


class Carrier(Protocol):
    """A target that must move with its image (masks, points): wrapped as a tv_tensor for the
    transforms (a `DataError` when it does not fit its image), and optionally checked and
    converted back afterwards."""

    def wrap(self, target: torch.Tensor, canvas: tuple[int, int]) -> Any: ...


MAX_DRAWS = 10
"""Augmentations tried for one sample before it falls back to the plain resize."""


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Decoded, transformed uint8 images and their targets (an empty tensor for test items).

    Image and target go through the transform together, so masks and points (tv_tensors via the
    `carrier`) move with the image; a plain target tensor passes through untouched. When the
    carrier's `unwrap` refuses a transformed target (a point pushed off the image), the sample is
    drawn again, and after `MAX_DRAWS` refusals it gets `plain` (resize only) instead.
    """

    def __init__(
        self,
        items: Items,
        targets: torch.Tensor | None,
        tfm: v2.Compose,
        carrier: Carrier | None = None,
        plain: v2.Transform | None = None,
    ) -> None:
        self.items, self.targets, self.tfm = items, targets, tfm
        self.carrier, self.plain = carrier, plain
        self.unwrap = getattr(carrier, "unwrap", None)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(read_image(Path(self.items.items[i]), self.items.origin(i)))
        if self.targets is None or self.carrier is None:
            target = torch.empty(0) if self.targets is None else self.targets[i]
            image, target = self.tfm(image, target)
            return image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor)
        canvas = (int(image.shape[-2]), int(image.shape[-1]))
        try:
            wrapped = self.carrier.wrap(self.targets[i], canvas)
        except DataError as err:  # the carrier says what does not fit; the item says where
            raise DataError(f"{self.items.origin(i)}: {err}") from err
        for tfm in [self.tfm] * MAX_DRAWS + [self.plain or self.tfm]:
            moved_image, moved = tfm(image, wrapped)
            result = moved if self.unwrap is None else self.unwrap(moved, tuple(moved_image.shape[-2:]))
            if result is not None:
                return moved_image.as_subclass(torch.Tensor), result.as_subclass(torch.Tensor)
        raise DataError(f"{self.items.origin(i)}: its target does not fit its image even unaugmented")
