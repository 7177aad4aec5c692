"""Segmentation on the wire: a V2 `mask` (N×H×W uint8), `Segment` answers as PNG masks with the
class table, and mask corrections checked against the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import UnidentifiedImageError

from serving.bundle.images import ImageDecodeError, encode_mask_png, open_image
from serving.bundle.pipeline import Size
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from serving.server.codecs.base import FeedbackError, OutputTensor, Record, TaskCodec
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["CODEC"]

MASK = "mask"


class SegmentationCodec(TaskCodec):
    name = "segmentation"
    call = "Segment"

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


CODEC = SegmentationCodec()
