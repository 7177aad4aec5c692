"""Point targets (pose / coordinate regression): (x, y) per named point, read from CSV columns.

Coordinates are continuous pixels: pixel (i, j) spans [i, i+1) × [j, j+1), so the image's top-left
corner is (0, 0) and its bottom-right corner (width, height). Targets are stored scaled to [-1, 1]
of their own image (the loss then does not depend on image size), travel through the transforms
as `tv_tensors.KeyPoints` in pixels, and come back scaled to the transformed image. A point that a
transform pushed outside the image makes the sample be drawn again (see `ImageDataset`): a point
clamped to the border would be a silently wrong label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from training.data.items import Items
from training.errors import ConfigError, DataError, LabelError

__all__ = ["PointsEncoder", "PointsFromColumns", "image_sizes"]


def image_sizes(items: Items) -> torch.Tensor:
    """(N, 2) (height, width) of each image, from its header alone."""
    sizes = []
    entries: Sequence[Path | str] = items.items
    for i, item in enumerate(entries):
        try:
            with Image.open(item) as image:
                sizes.append((image.height, image.width))
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{items.origin(i)}: cannot read image {item}: {err}") from err
    return torch.tensor(sizes, dtype=torch.float32).reshape(-1, 2)


@dataclass(frozen=True)
class PointsFromColumns:
    """Point `p` of each row is (`p_x`, `p_y`) in the image's pixels (BIWI's head centre: `centre`),
    or the columns `x_col` and `y_col` name, `{point}` standing for the point's name (a CSV of one
    point in columns `x`, `y`: `x_col="x"`, `y_col="y"`)."""

    names: Sequence[str]
    x_col: str = "{point}_x"
    y_col: str = "{point}_y"

    def __post_init__(self) -> None:
        columns = self.columns()
        if len(set(columns)) < len(columns):
            raise ConfigError(
                f"x_col {self.x_col!r} and y_col {self.y_col!r} give {len(self.names)} points "
                f"({', '.join(self.names)}) the same columns: put {{point}} in them, as in {{point}}_x"
            )

    def columns(self) -> list[str]:
        patterns = (self.x_col, self.y_col)
        return [pattern.replace("{point}", name) for name in self.names for pattern in patterns]

    def __call__(self, items: Items) -> list[list[float]]:
        if items.rows is None:
            raise DataError("points are read from CSV columns; the items must come from a CSV")
        rows = []
        for i, row in enumerate(items.rows):
            values = []
            for column in self.columns():
                if column not in row:
                    raise DataError(f"{items.origin(i)}: no column {column!r} (points: {list(self.names)})")
                try:
                    values.append(float(row[column]))
                except ValueError:
                    raise LabelError(f"{items.origin(i)}: {column}={row[column]!r} is not a number") from None
            rows.append(values)
        return rows

    def encoder(self, train_labels: Sequence[Any]) -> PointsEncoder:
        return PointsEncoder(list(self.names))


@dataclass
class PointsEncoder:
    """Pixel points ↔ (N, 2K) targets in [-1, 1] of their image: x0, y0, x1, y1, ..."""

    classes: list[str]  # the point names

    def encode(self, labels: Sequence[Sequence[float]], items: Items) -> torch.Tensor:
        pixels = torch.tensor(labels, dtype=torch.float32).reshape(len(labels), -1, 2)
        sizes = image_sizes(items)  # (h, w)
        extent = sizes.flip(1).unsqueeze(1)  # (w, h) per item, one row for all its points
        outside = ((pixels < 0) | (pixels > extent)).any(dim=(1, 2)).nonzero().flatten().tolist()
        if outside:
            i = outside[0]
            raise LabelError(
                f"{items.origin(i)}: point {pixels[i].tolist()} lies outside its "
                f"{int(sizes[i, 1])}×{int(sizes[i, 0])} image ({len(outside)} such row(s))"
            )
        return (pixels / extent * 2 - 1).reshape(len(labels), -1)

    def decode(self, target: torch.Tensor) -> list[tuple[float, float]]:
        """[-1, 1] coordinates as (x, y) pairs, for display."""
        return [(float(x), float(y)) for x, y in target.reshape(-1, 2).tolist()]

    def wrap(self, target: torch.Tensor, canvas: tuple[int, int]) -> Any:
        """To pixels of the (height, width) `canvas`, as KeyPoints the transforms move."""
        h, w = canvas
        pixels = (target.reshape(-1, 2) + 1) / 2 * torch.tensor([w, h], dtype=torch.float32)
        return tv_tensors.KeyPoints(pixels, canvas_size=canvas)

    def unwrap(self, moved: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor | None:
        """Back to [-1, 1] of the transformed image; None if a point left it."""
        h, w = canvas
        pixels = moved.as_subclass(torch.Tensor).reshape(-1, 2)
        extent = torch.tensor([w, h], dtype=torch.float32)
        if ((pixels < 0) | (pixels > extent)).any():
            return None
        return (pixels / extent * 2 - 1).reshape(-1)
