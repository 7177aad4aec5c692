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

A served record (`FeedbackStore.add_served`) is held to the server's limits as an inference item is:
what it sent is reserved in the memory budget, and its image decodes in the decode pool's fair turns
(`serving.server.decode_turns`), holding what its header says decoding it holds, so a small PNG that
declares 40 megapixels is refused RESOURCE_EXHAUSTED where the budget cannot take it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serving.bundle import Bundle, Manifest
from serving.bundle.durable import write_atomically
from serving.bundle.images import ImageDecodeError, ImageHeader, decode_header, read_header
from serving.server.codecs import FeedbackError, Record, codec_for

if TYPE_CHECKING:
    from serving.server.served_model import ServedModel

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
    _check_size(correction, max_bytes)
    check = _CheckCorrection(correction, bundle, max_pixels)
    check.measure()
    return check.finish()


def _check_size(correction: Correction, max_bytes: int) -> None:
    size = len(correction.image) + len(correction.mask_png)
    if size > max_bytes:
        raise FeedbackError(
            f"the record is {size:,} bytes, over the limit of {max_bytes:,} bytes (max_record_mb)"
        )


class _CheckCorrection:
    """A correction's check as a decode turn (`serving.server.decode_turns.Job`): the cheap checks
    and the image's header first (what decoding it holds, nothing decoded), then the decode and the
    answer against the model. The answer's own decode (a segmentation mask, no larger than the image
    in pixels and 1 byte each) comes after the image's pixels are let go, within what they held."""

    def __init__(self, correction: Correction, bundle: Bundle, max_pixels: int) -> None:
        self.correction, self.bundle, self.max_pixels = correction, bundle, max_pixels
        self.header: ImageHeader | None = None

    def measure(self) -> int:
        correction, task, manifest = self.correction, self.bundle.task, self.bundle.manifest
        if task.feedback is None:
            raise FeedbackError(
                f"model {manifest.name!r} answers {task.name}; image feedback does not fit it"
            )
        if not correction.image:
            raise FeedbackError("no image: send the image the model answered")
        try:
            self.header = read_header(correction.image, self.max_pixels)  # as decode_pixels decodes
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
            got = [field for field, present in given.items() if present]
            raise FeedbackError(f"a {task.name} model's correction is `{wanted}` alone; got {got}")
        return self.header.holds

    def finish(self) -> Record:
        header, self.header = self.header, None
        layout = self.bundle.task.feedback
        assert header is not None and layout is not None  # measured first
        extension = _EXTENSIONS.get(str(header.image.format), ".img")
        try:
            height, width = decode_header(header).shape[:2]  # decodes whole: a truncated image fails here
        except ImageDecodeError as err:
            raise FeedbackError(f"image: {err}") from err
        task, correction = self.bundle.task, self.correction
        answer = getattr(correction, layout.field)
        image_size = (int(height), int(width))
        return codec_for(task.name).feedback_record(
            correction.image, extension, answer, self.bundle.manifest, image_size
        )

    def describe(self) -> str:
        return f"a {self.header.describe()}" if self.header is not None else "an image"


class FeedbackStore:
    """Records per model under `root/<model>/`, at most `max_records` each; safe across threads."""

    def __init__(self, root: Path, max_records: int) -> None:
        self.root, self.max_records = root, max_records
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, bundle: Bundle, correction: Correction, max_pixels: int, max_bytes: int) -> tuple[str, int]:
        """Check `correction` against the model of `bundle` and store it; returns (record id, records
        now stored). A correction that does not fit is a `FeedbackError`; nothing is written."""
        return self.write(bundle, check_correction(correction, bundle, max_pixels, max_bytes))

    async def add_served(self, model: ServedModel, correction: Correction, max_bytes: int) -> tuple[str, int]:
        """`add` for a call to the served `model`: what was sent is held in the server's memory budget
        for the call, the image decodes in the decode pool's fair turns holding its header's estimate
        there too (`MemoryBudgetError`, RESOURCE_EXHAUSTED, where it does not fit), and the record is
        written off the event loop."""
        _check_size(correction, max_bytes)
        model.memory.reserve(len(correction.image) + len(correction.mask_png))
        check = _CheckCorrection(correction, model.bundle, model.max_image_pixels)
        (result,) = await model.turns.run([check], model.memory)
        if isinstance(result, BaseException):
            raise result
        loop = asyncio.get_running_loop()  # fsync is blocking work; it holds no decode thread's turn
        return await loop.run_in_executor(None, self.write, model.bundle, result)

    def write(self, bundle: Bundle, record: Record) -> tuple[str, int]:
        """Store a checked record (`check_correction`); returns (record id, records now stored)."""
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
