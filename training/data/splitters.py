"""How to split: each splitter maps items (`Items`) to (train indices, valid indices)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from training.data.items import Items
from training.errors import DataError

__all__ = [
    "ColumnSplitter",
    "FileListSplitter",
    "FolderSplitter",
    "RandomSplitter",
    "Splitter",
    "Subsample",
    "subsampled",
]

Indices = tuple[list[int], list[int]]


class Splitter(Protocol):
    def __call__(self, items: Items) -> Indices: ...


@dataclass(frozen=True)
class RandomSplitter:
    """A seeded random fraction for validation (its own generator: the global one is untouched)."""

    valid_pct: float = 0.2
    seed: int = 42

    def __call__(self, items: Items) -> Indices:
        if not 0 < self.valid_pct < 1:
            raise DataError(f"valid_pct must be between 0 and 1, got {self.valid_pct}")
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_valid = max(1, round(len(items) * self.valid_pct))
        return sorted(order[n_valid:]), sorted(order[:n_valid])


_TRUE, _FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True)
class ColumnSplitter:
    """A boolean CSV column (`is_valid`: true/false, 1/0, yes/no) says which rows validate."""

    column: str = "is_valid"

    def __call__(self, items: Items) -> Indices:
        if items.rows is None:
            raise DataError(f"ColumnSplitter({self.column!r}) needs items read from a CSV")
        train, valid = [], []
        for i, row in enumerate(items.rows):
            if self.column not in row:
                raise DataError(f"{items.origin(i)}: no column {self.column!r}")
            value = row[self.column].strip().lower()
            if value in _TRUE:
                valid.append(i)
            elif value in _FALSE:
                train.append(i)
            else:
                raise DataError(f"{items.origin(i)}: {self.column}={row[self.column]!r} is not true/false")
        return train, valid


@dataclass(frozen=True)
class FolderSplitter:
    """The name of an item's parent folder (`train/`, `valid/`) says which split it is in."""

    train: str = "train"
    valid: str = "valid"

    def __call__(self, items: Items) -> Indices:
        train, valid = [], []
        entries: Sequence[Path | str] = items.items
        for i, item in enumerate(entries):
            # The nearest such folder decides: the dataset may itself live under a "valid/" folder.
            for folder in reversed(Path(item).parent.parts):
                if folder == self.valid:
                    valid.append(i)
                    break
                if folder == self.train:
                    train.append(i)
                    break
        return train, valid


@dataclass(frozen=True)
class FileListSplitter:
    """Items named in a list (file names with or without extension) validate; the rest train."""

    names: frozenset[str]
    source: str = "the valid list"

    @classmethod
    def from_file(cls, path: Path) -> FileListSplitter:
        if not path.is_file():
            raise DataError(f"{path}: no such file (expected one image name per line)")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return cls(frozenset(n for n in names if n), source=path.name)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> FileListSplitter:
        return cls(frozenset(names))

    def __call__(self, items: Items) -> Indices:
        train: list[int] = []
        valid: list[int] = []
        seen: set[str] = set()
        entries: Sequence[Path | str] = items.items
        for i, item in enumerate(entries):
            path = Path(item)
            hit = {path.name, path.stem} & self.names
            (valid if hit else train).append(i)
            seen |= hit
        unknown = sorted(self.names - seen)
        if unknown:
            raise DataError(f"{self.source}: {len(unknown)} names match no item, e.g. {unknown[:3]}")
        return train, valid


@dataclass(frozen=True)
class Subsample:
    """Another splitter's split, each side cut to a seeded random subset of at most `max_train` /
    `max_valid` items (fastai users' partial data, for quick runs); order kept."""

    splitter: Splitter
    max_train: int | None = None
    max_valid: int | None = None
    seed: int = 42

    def __call__(self, items: Items) -> Indices:
        train, valid = self.splitter(items)
        generator = torch.Generator().manual_seed(self.seed)
        return _sample(train, self.max_train, generator), _sample(valid, self.max_valid, generator)


def _sample(indices: list[int], most: int | None, generator: torch.Generator) -> list[int]:
    if most is None or len(indices) <= most:
        return indices
    chosen = torch.randperm(len(indices), generator=generator)[:most].tolist()
    return sorted(indices[i] for i in chosen)


def subsampled(splitter: Splitter, max_train: int | None, max_valid: int | None, seed: int = 42) -> Splitter:
    """`splitter`, cut to subsets where a maximum is given."""
    if max_train is None and max_valid is None:
        return splitter
    return Subsample(splitter, max_train, max_valid, seed)
