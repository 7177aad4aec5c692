"""Online feedback: a served item's correct answer, checked against the model that answered it and
stored durably in the data block layout that `train-kit finetune` reads.

    feedback/<model>/images/<id>.<ext>         the item, as the client sent it
    feedback/<model>/labels.csv                multi-label: image_name,tags,version
    feedback/<model>/points.csv                pose: image_name,<point>_x,<point>_y,...,version
    feedback/<model>/labels/<id>_P.png         segmentation masks (CamVid's layout), with
    feedback/<model>/records.csv, codes.txt    image_name,version and the model's codes

A record's files are written first, then its CSV row: every file goes to a temporary name, is
fsynced and renamed into place, and the CSV is rewritten whole the same way. A crash therefore
loses at most the record being written (an image no CSV row names is ignored), never an earlier
one, and never leaves a half-written file for training to trip over.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.bundle import Manifest
from serving.durable import write_atomically
from serving.images import ImageDecodeError, decode_image, open_image
from serving.quoting import shown

__all__ = [
    "Correction",
    "FeedbackError",
    "FeedbackFullError",
    "FeedbackOffError",
    "FeedbackStore",
    "Record",
    "check_correction",
]

CSV_NAMES = {"multilabel": "labels.csv", "segmentation": "records.csv", "pose": "points.csv"}
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


class FeedbackError(ValueError):
    """The correction does not fit the model or its item (gRPC: INVALID_ARGUMENT); nothing was written."""


class FeedbackFullError(RuntimeError):
    """The model's feedback store holds its maximum of records (gRPC: RESOURCE_EXHAUSTED)."""


class FeedbackOffError(RuntimeError):
    """This server keeps no feedback store (gRPC: FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class Correction:
    """What a client says the right answer was; only the fields of the model's task are set."""

    image: bytes
    labels: Sequence[str] = ()
    mask_png: bytes = b""
    points: Sequence[tuple[str, float, float]] = ()


@dataclass(frozen=True)
class Record:
    """A checked correction, ready to store: the image's file extension and the CSV row's values."""

    image: bytes
    extension: str
    row: dict[str, str]
    mask_png: bytes = b""


def check_correction(correction: Correction, manifest: Manifest, max_pixels: int, max_bytes: int) -> Record:
    """The correction against the model: a decodable image, and an answer of the model's kind that
    fits it (known tags; a mask of the image's size and the model's codes; every point, inside)."""
    size = len(correction.image) + len(correction.mask_png)
    if size > max_bytes:
        raise FeedbackError(
            f"the record is {size:,} bytes, over the limit of {max_bytes:,} bytes (max_record_mb)"
        )
    if not correction.image:
        raise FeedbackError("no image: send the image the model answered")
    try:
        image = open_image(correction.image, max_pixels)
        extension = _EXTENSIONS.get(str(image.format), ".img")
        height, width = decode_image(correction.image, max_pixels).shape[-2:]
    except ImageDecodeError as err:
        raise FeedbackError(f"image: {err}") from err
    task, known = manifest.task, manifest.labels
    given = {
        "labels": bool(correction.labels),
        "mask_png": bool(correction.mask_png),
        "points": bool(correction.points),
    }
    wanted = {"multilabel": "labels", "segmentation": "mask_png", "pose": "points"}.get(task)
    if wanted is None:
        raise FeedbackError(f"model {manifest.name!r} answers {task}; image feedback does not fit it")
    extra = [field for field, present in given.items() if present and field != wanted]
    if extra or not given[wanted]:
        raise FeedbackError(
            f"a {task} model's correction is `{wanted}` alone; got {[f for f, p in given.items() if p]}"
        )
    if task == "multilabel":
        return Record(correction.image, extension, {"tags": " ".join(_tags(correction.labels, known))})
    if task == "segmentation":
        _check_mask(correction.mask_png, (int(height), int(width)), len(known))
        return Record(correction.image, extension, {}, correction.mask_png)
    return Record(correction.image, extension, _points(correction.points, known, int(width), int(height)))


def _tags(labels: Sequence[str], known: list[str]) -> list[str]:
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise FeedbackError(f"unknown label {shown(unknown[0])}; the model knows {known}")
    if len(set(labels)) != len(labels):
        raise FeedbackError("a label is given twice")
    return [label for label in known if label in labels]  # in the model's order


def _check_mask(data: bytes, size: tuple[int, int], n_codes: int) -> None:
    try:
        with Image.open(io.BytesIO(data)) as mask:
            if mask.format != "PNG" or mask.mode not in ("L", "P"):
                raise FeedbackError(f"mask_png must be an 8-bit grayscale PNG, got {mask.format} {mask.mode}")
            pixels = np.asarray(mask)
    except (UnidentifiedImageError, OSError) as err:
        raise FeedbackError(f"mask_png is not a readable PNG ({err})") from err
    if pixels.shape != size:
        raise FeedbackError(
            f"mask_png is {pixels.shape[1]}×{pixels.shape[0]}, the image {size[1]}×{size[0]}; they must match"
        )
    if pixels.size and int(pixels.max()) >= n_codes:
        raise FeedbackError(
            f"mask_png holds class id {int(pixels.max())}; the model has {n_codes} (0..{n_codes - 1})"
        )


def _points(
    points: Sequence[tuple[str, float, float]], known: list[str], width: int, height: int
) -> dict[str, str]:
    """The CSV columns of the points (`<name>_x`, `<name>_y`), in the model's point order."""
    given = {name: (x, y) for name, x, y in points}
    if len(points) != len(known) or set(given) != set(known):
        raise FeedbackError(f"points must name each of {known} once; got {[shown(n) for n, _, _ in points]}")
    for name, (x, y) in given.items():
        if not (0 <= x <= width and 0 <= y <= height):
            raise FeedbackError(f"point {name!r} at ({x:g}, {y:g}) lies outside the {width}×{height} image")
    return {
        f"{name}_{axis}": f"{value:.2f}"
        for name in known
        for axis, value in zip("xy", given[name], strict=True)
    }


class FeedbackStore:
    """Records per model under `root/<model>/`, at most `max_records` each; safe across threads."""

    def __init__(self, root: Path, max_records: int) -> None:
        self.root, self.max_records = root, max_records
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, manifest: Manifest, record: Record) -> tuple[str, int]:
        """Store `record` for the model of `manifest`; returns (record id, records now stored)."""
        folder = self.root / manifest.name
        index = folder / CSV_NAMES[manifest.task]
        with self._lock:
            rows = self._counts.get(manifest.name)
            if rows is None:
                rows = self._counts[manifest.name] = _count_rows(index)
            if rows >= self.max_records:
                raise FeedbackFullError(
                    f"the feedback store of {manifest.name!r} holds its maximum of {self.max_records} "
                    "records; fine-tune on them and clear it, or raise feedback.max_records"
                )
            record_id = f"{rows + 1:06d}-{uuid.uuid4().hex[:8]}"
            name = f"{record_id}{record.extension}"
            write_atomically(folder / "images" / name, record.image)
            if record.mask_png:
                write_atomically(folder / "labels" / f"{record_id}_P.png", record.mask_png)
                codes = folder / "codes.txt"
                if not codes.is_file():
                    write_atomically(codes, "".join(f"{c}\n" for c in manifest.labels).encode())
            row = {"image_name": name, **record.row, "version": str(manifest.version)}
            write_atomically(index, _with_row(index, row))
            self._counts[manifest.name] = rows + 1
            return record_id, rows + 1


def _count_rows(index: Path) -> int:
    if not index.is_file():
        return 0
    with index.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))


def _with_row(index: Path, row: dict[str, str]) -> bytes:
    """The CSV's bytes with `row` appended (the header written first for a new file)."""
    before = index.read_bytes() if index.is_file() else b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    if not before:
        writer.writeheader()
    writer.writerow(row)
    return before + out.getvalue().encode("utf-8")
