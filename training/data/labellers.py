"""How to label: a labeller reads each item's raw label; an encoder turns labels into tensors.

The encoder's vocabulary is learnt from the training split alone, so a validation label the
training split never shows is an error (the model could never predict it), caught here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from training.data.items import Items
from training.errors import DataError, LabelError

__all__ = [
    "CategoryEncoder",
    "FromColumn",
    "FromFolderName",
    "FromPathFunction",
    "LabelEncoder",
    "Labeller",
    "MultiCategoryEncoder",
    "TagsFromColumn",
]


class LabelEncoder(Protocol):
    """Turns raw labels into a target tensor and back."""

    classes: list[str]

    def encode(self, labels: Sequence[Any], items: Items) -> torch.Tensor: ...

    def decode(self, target: torch.Tensor) -> Any: ...


class Labeller(Protocol):
    def __call__(self, items: Items) -> list[Any]: ...

    def encoder(self, train_labels: Sequence[Any]) -> LabelEncoder: ...


@dataclass
class MultiCategoryEncoder:
    """Tag lists ↔ multi-hot float vectors over the sorted training tags."""

    classes: list[str]

    @classmethod
    def fit(cls, labels: Sequence[Sequence[str]]) -> MultiCategoryEncoder:
        return cls(sorted({tag for tags in labels for tag in tags}))

    def encode(self, labels: Sequence[Sequence[str]], items: Items) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.classes)}
        target = torch.zeros(len(labels), len(self.classes))
        for row, tags in enumerate(labels):
            for tag in tags:
                if tag not in index:
                    raise LabelError(
                        f"{items.origin(row)}: tag {tag!r} does not occur in the training split, "
                        "so the model could never predict it; move such rows to training or drop the tag"
                    )
                target[row, index[tag]] = 1.0
        return target

    def decode(self, target: torch.Tensor) -> list[str]:
        return [c for c, on in zip(self.classes, target.tolist(), strict=True) if on >= 0.5]


@dataclass
class CategoryEncoder:
    """Single labels ↔ class indices over the sorted training labels."""

    classes: list[str]

    @classmethod
    def fit(cls, labels: Sequence[str]) -> CategoryEncoder:
        return cls(sorted(set(labels)))

    def encode(self, labels: Sequence[str], items: Items) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [(i, lab) for i, lab in enumerate(labels) if lab not in index]
        if unknown:
            row, label = unknown[0]
            raise LabelError(
                f"{items.origin(row)}: label {label!r} does not occur in the training split "
                f"({len(unknown)} items have such labels)"
            )
        return torch.tensor([index[lab] for lab in labels], dtype=torch.long)

    def decode(self, target: torch.Tensor) -> str:
        return self.classes[int(target)]


def _column(items: Items, i: int, column: str) -> str:
    if items.rows is None:
        raise DataError(f"labelling from column {column!r} needs items read from a CSV")
    row = items.rows[i]
    if column not in row:
        raise DataError(f"{items.origin(i)}: no column {column!r}")
    return row[column]


@dataclass(frozen=True)
class TagsFromColumn:
    """Planet-style tags: a CSV column of `delim`-separated tags (multi-label)."""

    column: str = "tags"
    delim: str = " "

    def __call__(self, items: Items) -> list[list[str]]:
        labels = []
        for i in range(len(items)):
            tags = [t for t in _column(items, i, self.column).split(self.delim) if t.strip()]
            if not tags:
                raise LabelError(f"{items.origin(i)}: tag list is empty")
            labels.append(sorted({t.strip() for t in tags}))
        return labels

    def encoder(self, train_labels: Sequence[Any]) -> MultiCategoryEncoder:
        return MultiCategoryEncoder.fit(train_labels)


@dataclass(frozen=True)
class FromColumn:
    """One class per item from a CSV column (single-label)."""

    column: str = "label"

    def __call__(self, items: Items) -> list[str]:
        labels = []
        for i in range(len(items)):
            label = _column(items, i, self.column).strip()
            if not label:
                raise LabelError(f"{items.origin(i)}: column {self.column!r} is empty")
            labels.append(label)
        return labels

    def encoder(self, train_labels: Sequence[Any]) -> CategoryEncoder:
        return CategoryEncoder.fit(train_labels)


@dataclass(frozen=True)
class FromFolderName:
    """The item's parent folder is its class (ImageNet layout: `train/dog/1.jpg`)."""

    def __call__(self, items: Items) -> list[str]:
        return [Path(item).parent.name for item in items.items]

    def encoder(self, train_labels: Sequence[Any]) -> CategoryEncoder:
        return CategoryEncoder.fit(train_labels)


@dataclass(frozen=True)
class FromPathFunction:
    """A function of the item's path gives its label (a class name, or a mask file later on).

    `make_encoder` turns the training labels into an encoder; by default labels are classes.
    """

    fn: Callable[[Path], Any]
    make_encoder: Callable[[Sequence[Any]], LabelEncoder] = CategoryEncoder.fit

    def __call__(self, items: Items) -> list[Any]:
        labels = []
        entries: Sequence[Path | str] = items.items
        for i, item in enumerate(entries):
            try:
                labels.append(self.fn(Path(item)))
            except Exception as err:  # a user's function: report which item it failed on
                raise LabelError(f"{items.origin(i)}: labelling function failed: {err}") from err
        return labels

    def encoder(self, train_labels: Sequence[Any]) -> LabelEncoder:
        return self.make_encoder(train_labels)
