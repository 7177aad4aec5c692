"""The data block chain: items → split → label → transform (+ test set) → DataBunch.

    src = (ItemList.from_csv(path, "labels.csv", folder="train", suffix=".jpg")
           .split(FileListSplitter.from_file(path / "valid.txt"))
           .label(TagsFromColumn("tags")))
    data = src.transform(get_transforms(flip_vert=True), size=64).databunch(bs=64).normalize()

An `ItemList` keeps, beside each item, the CSV row it came from (so a labeller can read a column)
and its origin ("labels.csv line 17"), so every later error can point at the line to fix. Labels
are read and encoded once, at `label`; `transform` returns a copy with new transforms or size, so
`src.transform(tfms, size=128).databunch(...)` rebuilds loaders for progressive resizing without
touching the labels again. Splitters and labellers see items through the `Items` protocol only.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from training.data.bunch import DataBunch
from training.data.datasets import Carrier, ImageDataset
from training.data.labellers import LabelEncoder, Labeller
from training.data.transforms import Transforms, sized
from training.distributed import Ranks
from training.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ItemList", "LabelledData", "SplitItems", "read_csv"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class ItemList:
    """Items (image paths or texts), their source rows and origins, index-aligned."""

    items: list[Path] | list[str]
    rows: list[dict[str, str]] | None = None
    origins: list[str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def origin(self, i: int) -> str:
        """Where item `i` was named, for error messages."""
        return self.origins[i] if self.origins is not None else str(self.items[i])

    def subset(self, indices: Sequence[int]) -> ItemList:
        items = [self.items[i] for i in indices]
        return ItemList(
            items=items,  # type: ignore[arg-type]  # same element type as self.items
            rows=None if self.rows is None else [self.rows[i] for i in indices],
            origins=None if self.origins is None else [self.origins[i] for i in indices],
        )

    def split(self, splitter: Callable[[ItemList], tuple[Sequence[int], Sequence[int]]]) -> SplitItems:
        """Answer "how to split" with a splitter; see `training.data.splitters`."""
        train_idx, valid_idx = splitter(self)
        if not train_idx:
            raise DataError(f"{type(splitter).__name__} left no items for training")
        if not valid_idx:
            raise DataError(f"{type(splitter).__name__} left no items for validation")
        return SplitItems(self.subset(train_idx), self.subset(valid_idx))

    @classmethod
    def from_folder(
        cls, path: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS, recurse: bool = True
    ) -> ItemList:
        """Every file under `path` with one of `extensions`, sorted for reproducibility."""
        if not path.is_dir():
            raise DataError(f"{path}: no such folder")
        wanted = {e.lower() for e in extensions}
        pattern = "**/*" if recurse else "*"
        files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in wanted)
        if not files:
            raise DataError(f"{path}: no files with extensions {sorted(wanted)}")
        return cls(items=files)

    @classmethod
    def from_csv(
        cls, path: Path, csv_name: str, column: str = "image_name", folder: str = "", suffix: str = ""
    ) -> ItemList:
        """Images named in `column` of `path/csv_name`, found at `path/folder/<name><suffix>`."""
        rows, origins = read_csv(path / csv_name, required=(column,))
        return cls.from_rows(rows, path / folder, column, suffix, origins)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, str]],
        folder: Path,
        column: str,
        suffix: str = "",
        origins: list[str] | None = None,
    ) -> ItemList:
        """Images named in `column` of in-memory rows (e.g. `DataFrame.to_dict("records")`)."""
        origins = origins or [f"row {i}" for i in range(len(rows))]
        # Records from a DataFrame hold bools, numbers and NaN; later steps read cells as text.
        text_rows = [{str(k): _cell(v) for k, v in r.items()} for r in rows]
        items: list[Path] = []
        for row, origin in zip(text_rows, origins, strict=True):
            name = row.get(column, "").strip()
            if not name:
                raise DataError(f"{origin}: column {column!r} is empty")
            file = folder / f"{name}{suffix}"
            if not file.is_file():
                raise DataError(f"{origin}: image {file} does not exist")
            items.append(file)
        return cls(items=items, rows=text_rows, origins=origins)

    @classmethod
    def from_text_csv(cls, path: Path, csv_name: str, column: str = "text") -> ItemList:
        """Texts from `column` of `path/csv_name`; the rows stay, for labels and splits."""
        rows, origins = read_csv(path / csv_name, required=(column,))
        empty = [origin for row, origin in zip(rows, origins, strict=True) if not row[column].strip()]
        if empty:
            raise DataError(f"{empty[0]}: column {column!r} is empty ({len(empty)} such rows)")
        return cls(items=[row[column] for row in rows], rows=rows, origins=origins)

    @classmethod
    def from_text_folders(cls, path: Path, label: str = "label", suffix: str = ".txt") -> ItemList:
        """Texts in `path/<label>/*.txt` (one file a text, its folder its label; `path/<split>/<label>/`
        also works): each row holds `label`, the file and its split folder, for FromColumn/ColumnSplitter."""
        if not path.is_dir():
            raise DataError(f"{path}: no such folder")
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        if not files:
            raise DataError(f"{path}: no {suffix} files under <label>/ folders")
        texts, rows = [], []
        for file in files:
            try:
                texts.append(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(f"{file}: not UTF-8 text ({err})") from err
            parts = file.relative_to(path).parts
            rows.append(
                {label: file.parent.name, "file": str(file), "split": parts[0] if len(parts) > 2 else ""}
            )
        return cls(items=texts, rows=rows, origins=[str(f) for f in files])

    @classmethod
    def from_list(cls, items: Sequence[Path | str]) -> ItemList:
        """Paths (checked to exist) or texts given directly."""
        if items and all(isinstance(i, Path) for i in items):
            paths = [Path(i) for i in items]
            for p in paths:
                if not p.is_file():
                    raise DataError(f"{p}: no such file")
            return cls(items=paths)
        return cls(items=[str(i) for i in items])


def read_csv(path: Path, required: Sequence[str]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a CSV with a header, and each row's origin ("labels.csv line 2" is the first)."""
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise DataError(
                f"{path.name}: no column {', '.join(map(repr, missing))} (columns are: {', '.join(columns)})"
            )
        rows, origins = [], []
        for row in reader:
            rows.append({k: (v or "") for k, v in row.items() if k is not None})
            origins.append(f"{path.name} line {reader.line_num}")
    if not rows:
        raise DataError(f"{path.name}: has a header but no rows")
    return rows, origins


def _cell(value: object) -> str:
    """A record's value as CSV text: None and NaN (a DataFrame's empty cell) read as ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


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
        return DataBunch(self, bs=bs, num_workers=num_workers, device=device, seed=seed, ranks=ranks)
