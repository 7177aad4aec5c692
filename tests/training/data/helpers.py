"""Small real files for data block tests: CSVs, images and folder layouts written to disk."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import FileListSplitter, ItemList, LabelledData, TagsFromColumn


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """A CSV with `header` and `rows`, as a spreadsheet would save it."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def set_tags(root: Path, tags_by_name: dict[str, str]) -> None:
    """Rewrite `root/labels.csv` with new tag lists for the named images; other rows are kept."""
    rows = read_rows(root / "labels.csv")
    write_csv(
        root / "labels.csv",
        ["image_name", "tags"],
        [[r["image_name"], tags_by_name.get(r["image_name"], r["tags"])] for r in rows],
    )


def write_image(path: Path, size: tuple[int, int] = (16, 16), seed: int = 0, mode: str = "RGB") -> Path:
    """A random-noise image of `size` (width, height) in PIL `mode` ("RGB", "RGBA", "L", "P")."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels if mode == "RGBA" else pixels[..., :3]).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def tag_source(root: Path) -> LabelledData:
    """The documented chain over a `write_tag_images` folder: CSV items, valid.txt split, tags."""
    return (
        ItemList.from_csv(root, "labels.csv", folder="train", suffix=".jpg")
        .split(FileListSplitter.from_file(root / "valid.txt"))
        .label(TagsFromColumn("tags"))
    )
