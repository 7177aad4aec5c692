"""Segmentation (CamVid-style codes, U-Net): a class id per pixel, at the caller's image size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.bundle.images import ImageDecodeError, encode_mask_png, open_image
from serving.bundle.tasks.base import (
    FeedbackError,
    FeedbackLayout,
    OutputTensor,
    Record,
    ServedTask,
    Size,
    json_mask,
)
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest
    from serving.bundle.pipeline import Pipeline

__all__ = ["TASK", "SegmentationPostprocess"]

MASK = "mask"


@dataclass(frozen=True)
class SegmentationPostprocess:
    """Per-pixel argmax over the real classes (never `void`), resized back with nearest-neighbour."""

    codes: tuple[str, ...]
    void: int | None = None
    native: bool = False
    """Outputs at the image's own resolution (padded at the bottom and right): cropped, not resized."""

    def class_ids(self, outputs: np.ndarray) -> np.ndarray:
        """(N, classes, h, w) logits → (N, h, w) uint8 class ids at the network's size."""
        if self.void is not None:
            outputs = outputs.copy()
            outputs[:, self.void] = -np.inf
        return outputs.argmax(axis=1).astype(np.uint8)

    def masks(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[np.ndarray]:
        """One (height, width) uint8 mask per item, at that item's original size."""
        return [self._fit(ids, size) for ids, size in zip(self.class_ids(outputs), sizes, strict=True)]

    def _fit(self, ids: np.ndarray, size: Size) -> np.ndarray:
        if ids.shape == tuple(size):
            return ids
        if self.native:
            return np.ascontiguousarray(ids[: size[0], : size[1]])
        return np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.Resampling.NEAREST))

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return [{"mask": mask} for mask in self.masks(outputs, sizes)]


class SegmentationTask(ServedTask):
    name = "segmentation"
    call = "Segment"
    postprocess = SegmentationPostprocess
    feedback = FeedbackLayout("records.csv", "mask_png")
    spatial = True

    def labels(self, postprocess: SegmentationPostprocess) -> tuple[str, ...]:
        return postprocess.codes

    def problems(self, manifest: Manifest, pipeline: Pipeline) -> list[str]:
        post: SegmentationPostprocess = pipeline.postprocess
        if post.void is not None and not 0 <= post.void < len(post.codes):
            return [f"a void code {post.void} outside the {len(post.codes)} codes"]
        return []

    def v2_outputs(self, manifest: Manifest) -> list[OutputTensor]:
        return [OutputTensor(MASK, "UINT8", (-1, -1, -1))]

    def check_request_sizes(self, sizes: Sequence[Size]) -> None:
        """A mask tensor is N×H×W: the images of one request must share one size."""
        if len(set(sizes)) > 1:
            shown_sizes = sorted({f"{w}x{h}" for h, w in sizes})[:4]
            raise ValueError(
                f"the images of one request must share one size for the N×H×W {MASK!r} output; "
                f"got {', '.join(shown_sizes)} (send them in separate requests, or use Tasks.Segment)"
            )

    def v2_encode(
        self, postprocess: SegmentationPostprocess, outputs: np.ndarray, sizes: Sequence[Size]
    ) -> dict[str, np.ndarray | list[bytes]]:
        return {MASK: np.stack(postprocess.masks(outputs, sizes))}

    def json_answer(self, manifest: Manifest, answer: dict[str, Any]) -> dict[str, Any]:
        return json_mask(answer["mask"], manifest.labels)

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.SegmentResponse:
        return pb.SegmentResponse(
            results=[
                pb.Segmentation(
                    mask_png=encode_mask_png(a["mask"]), width=a["mask"].shape[1], height=a["mask"].shape[0]
                )
                for a in answers
            ],
            classes=[pb.SegmentClass(id=i, name=n) for i, n in enumerate(manifest.labels)],
        )

    def feedback_record(
        self, image: bytes, extension: str, answer: bytes, manifest: Manifest, size: Size
    ) -> Record:
        _check_mask(answer, size, len(manifest.labels))
        return Record(image, extension, {}, answer)


def _check_mask(data: bytes, size: Size, n_codes: int) -> None:
    """An 8-bit grayscale PNG of the image's size whose ids are the model's codes; the pixel limit
    and decompression-bomb check are those every image gets."""
    try:
        with open_image(data, size[0] * size[1]) as mask:
            if mask.format != "PNG" or mask.mode not in ("L", "P"):
                raise FeedbackError(f"mask_png must be an 8-bit grayscale PNG, got {mask.format} {mask.mode}")
            pixels = np.asarray(mask)
    except ImageDecodeError as err:
        raise FeedbackError(f"mask_png is not a readable PNG ({err})") from err
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


TASK = SegmentationTask()
