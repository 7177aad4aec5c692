"""Pose on the wire: V2 `points` (N×K×2 pixels), `Pose` answers, and point corrections checked
against the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.pipeline import Size
from serving.bundle.quoting import shown
from serving.bundle.tasks.pose import PosePostprocess
from serving.server.codecs.base import FeedbackError, OutputTensor, Record, TaskCodec
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["CODEC"]

POINTS = "points"


class PoseCodec(TaskCodec):
    name = "pose"
    call = "Pose"

    def v2_outputs(self, manifest: Manifest) -> list[OutputTensor]:
        return [OutputTensor(POINTS, "FP32", (-1, len(manifest.labels), 2))]

    def v2_encode(
        self, postprocess: PosePostprocess, outputs: np.ndarray, sizes: Sequence[Size]
    ) -> dict[str, np.ndarray | list[bytes]]:
        return {POINTS: postprocess.pixels(outputs, sizes)}

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.PoseResponse:
        return pb.PoseResponse(
            results=[pb.PoseResult(points=[pb.Point(**point) for point in a["points"]]) for a in answers]
        )

    def feedback_record(
        self,
        image: bytes,
        extension: str,
        answer: Sequence[tuple[str, float, float]],
        manifest: Manifest,
        size: Size,
    ) -> Record:
        """The CSV columns of the points (`<name>_x`, `<name>_y`), in the model's point order."""
        known, (height, width) = manifest.labels, size
        given = {name: (x, y) for name, x, y in answer}
        if len(answer) != len(known) or set(given) != set(known):
            raise FeedbackError(
                f"points must name each of {known} once; got {[shown(n) for n, _, _ in answer]}"
            )
        for name, (x, y) in given.items():
            if not (0 <= x <= width and 0 <= y <= height):
                raise FeedbackError(
                    f"point {name!r} at ({x:g}, {y:g}) lies outside the {width}×{height} image"
                )
        row = {
            f"{name}_{axis}": f"{value:.2f}"
            for name in known
            for axis, value in zip("xy", given[name], strict=True)
        }
        return Record(image, extension, row)


CODEC = PoseCodec()
