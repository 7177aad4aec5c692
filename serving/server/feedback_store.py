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

from serving.bundle import Bundle, Manifest
from serving.bundle.durable import write_atomically
from serving.bundle.images import ImageDecodeError, decode_pixels, open_image
from serving.server.codecs import FeedbackError, Record, codec_for

__all__ = [
    "Correction",
    "FeedbackError",
    "FeedbackFullError",
    "FeedbackOffError",
    "FeedbackStore",
    "check_correction",
]

_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


class FeedbackFullError(RuntimeError):
    """The model's feedback store holds its maximum of records (gRPC: RESOURCE_EXHAUSTED)."""


class FeedbackOffError(RuntimeError):
    """This server keeps no feedback store (gRPC: FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class Correction:
    """What a client says the right answer was; only the field of the model's task is set."""

    image: bytes
    labels: Sequence[str] = ()
    mask_png: bytes = b""
    points: Sequence[tuple[str, float, float]] = ()


def check_correction(correction: Correction, bundle: Bundle, max_pixels: int, max_bytes: int) -> Record:
    """The correction against the model: a decodable image, and an answer of the model's kind that
    fits it (the task's module checks the answer: known tags, a mask of the image's size, points inside)."""
    size = len(correction.image) + len(correction.mask_png)
    if size > max_bytes:
        raise FeedbackError(
            f"the record is {size:,} bytes, over the limit of {max_bytes:,} bytes (max_record_mb)"
        )
    task, manifest = bundle.task, bundle.manifest
    if task.feedback is None:
        raise FeedbackError(f"model {manifest.name!r} answers {task.name}; image feedback does not fit it")
    if not correction.image:
        raise FeedbackError("no image: send the image the model answered")
    try:
        image = open_image(correction.image, max_pixels)
        extension = _EXTENSIONS.get(str(image.format), ".img")
        height, width = decode_pixels(correction.image, max_pixels).shape[:2]
    except ImageDecodeError as err:
        raise FeedbackError(f"image: {err}") from err
    given = {
        "labels": bool(correction.labels),
        "mask_png": bool(correction.mask_png),
        "points": bool(correction.points),
    }
    wanted = task.feedback.field
    extra = [field for field, present in given.items() if present and field != wanted]
    if extra or not given[wanted]:
        raise FeedbackError(
            f"a {task.name} model's correction is `{wanted}` alone; got {[f for f, p in given.items() if p]}"
        )
    answer = getattr(correction, wanted)
    image_size = (int(height), int(width))
    return codec_for(task.name).feedback_record(correction.image, extension, answer, manifest, image_size)


class FeedbackStore:
    """Records per model under `root/<model>/`, at most `max_records` each; safe across threads."""

    def __init__(self, root: Path, max_records: int) -> None:
        self.root, self.max_records = root, max_records
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, bundle: Bundle, correction: Correction, max_pixels: int, max_bytes: int) -> tuple[str, int]:
        """Check `correction` against the model of `bundle` and store it; returns (record id, records
        now stored). A correction that does not fit is a `FeedbackError`; nothing is written."""
        record = check_correction(correction, bundle, max_pixels, max_bytes)
        manifest: Manifest = bundle.manifest
        assert bundle.task.feedback is not None  # checked with the correction
        folder = self.root / manifest.name
        index = folder / bundle.task.feedback.csv
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
