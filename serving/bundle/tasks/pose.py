"""Pose / point regression: named (x, y) points in the pixels of the caller's image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.quoting import shown
from serving.bundle.tasks.base import FeedbackError, FeedbackLayout, OutputTensor, Record, ServedTask, Size
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["TASK", "PosePostprocess"]

POINTS = "points"


@dataclass(frozen=True)
class PosePostprocess:
    """Coordinates in [-1, 1] of the network's square input → pixels of each original image.

    (-1, -1) is the top-left corner of the image and (1, 1) its bottom-right corner, so undoing
    the squish resize is one multiplication per axis.
    """

    points: tuple[str, ...]
    flip_pairs: tuple[str, ...] = ()
    """`left:right` names swapped on the horizontal flips it was trained with (for fine-tuning it)."""

    def pixels(self, outputs: np.ndarray, sizes: Sequence[Size]) -> np.ndarray:
        """(N, 2K) outputs → (N, K, 2) float32 (x, y) in each item's own pixels."""
        coords = outputs.reshape(len(outputs), len(self.points), 2).astype(np.float64)
        scale = np.array([[w, h] for h, w in sizes], np.float64).reshape(-1, 1, 2)
        return ((coords + 1) / 2 * scale).astype(np.float32)

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return [
            {
                "points": [
                    {"name": n, "x": float(x), "y": float(y)}
                    for n, (x, y) in zip(self.points, row, strict=True)
                ]
            }
            for row in self.pixels(outputs, sizes)
        ]


class PoseTask(ServedTask):
    name = "pose"
    call = "Pose"
    postprocess = PosePostprocess
    feedback = FeedbackLayout("points.csv", "points")
    onnx_output = "coords"

    def labels(self, postprocess: PosePostprocess) -> tuple[str, ...]:
        return postprocess.points

    def outputs_per_item(self, postprocess: PosePostprocess) -> int:
        return 2 * len(postprocess.points)

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


TASK = PoseTask()
