"""The data block chain: items → split → label → transform (+ test set) → DataBunch.

    src = (ItemList.from_csv(path, "labels.csv", folder="train", suffix=".jpg")
           .split(FileListSplitter.from_file(path / "valid.txt"))
           .label(TagsFromColumn("tags")))
    data = src.transform(get_transforms(flip_vert=True), size=64).databunch(bs=64).normalize()

Labels are read and encoded once, at `label`; `transform` returns a copy with new transforms or
size, so `src.transform(tfms, size=128).databunch(...)` rebuilds loaders for progressive resizing
without touching the labels again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from training.data.images import read_image
from training.data.labellers import LabelEncoder, Labeller
from training.data.sources import ItemList
from training.data.transforms import Transforms, sized
from training.distributed import Ranks
from training.errors import DataError

if TYPE_CHECKING:
    from training.data.bunch import DataBunch

__all__ = ["Carrier", "ImageDataset", "LabelledData", "SplitItems"]


@dataclass(frozen=True)
class SplitItems:
    """Training and validation items, not yet labelled."""

    train: ItemList
    valid: ItemList

    def label(self, labeller: Labeller) -> LabelledData:
        """Answer "how to label"; the encoder learns its classes from the training split only."""
        raw_train, raw_valid = labeller(self.train), labeller(self.valid)
        encoder = labeller.encoder(raw_train)
        return LabelledData(
            train=self.train,
            valid=self.valid,
            y_train=encoder.encode(raw_train, self.train),
            y_valid=encoder.encode(raw_valid, self.valid),
            encoder=encoder,
        )


@dataclass(frozen=True)
class LabelledData:
    """Labelled splits plus the transforms and size the loaders will apply."""

    train: ItemList
    valid: ItemList
    y_train: torch.Tensor
    y_valid: torch.Tensor
    encoder: LabelEncoder
    tfms: Transforms = field(default_factory=lambda: ([], []))
    size: int = 224
    test: ItemList | None = None

    @property
    def classes(self) -> list[str]:
        return self.encoder.classes

    def transform(self, tfms: Transforms | None = None, size: int | None = None) -> LabelledData:
        """A copy with other transforms and/or size; the labels are shared, not re-read."""
        if size is not None and size < 8:
            raise DataError(f"size must be at least 8 pixels, got {size}")
        return dataclasses.replace(self, tfms=self.tfms if tfms is None else tfms, size=size or self.size)

    def add_test(self, items: ItemList | Sequence[Path]) -> LabelledData:
        """Unlabelled items that ride along for prediction (validation transforms apply)."""
        test = items if isinstance(items, ItemList) else ItemList.from_list(list(items))
        return dataclasses.replace(self, test=test)

    def datasets(self) -> tuple[ImageDataset, ImageDataset, ImageDataset | None]:
        train_tfm, valid_tfm = self.tfms
        carrier = cast(Carrier, self.encoder) if hasattr(self.encoder, "wrap") else None  # masks, points
        plain = sized([], self.size)  # what a sample falls back to when augmentation keeps failing it
        return (
            ImageDataset(self.train, self.y_train, sized(train_tfm, self.size), carrier, plain),
            ImageDataset(self.valid, self.y_valid, sized(valid_tfm, self.size), carrier, plain),
            None if self.test is None else ImageDataset(self.test, None, sized(valid_tfm, self.size)),
        )

    def databunch(
        self,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        ranks: Ranks | None = None,
    ) -> DataBunch:
        """Wrap the splits in loaders: answer the sixth question (`ranks`: this rank's shards)."""
        from training.data.bunch import DataBunch

        return DataBunch(self, bs=bs, num_workers=num_workers, device=device, seed=seed, ranks=ranks)


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
        items: ItemList,
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
