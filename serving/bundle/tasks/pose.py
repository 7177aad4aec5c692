"""Pose / point regression: named (x, y) points in the pixels of the caller's image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.bundle.tasks.base import FeedbackLayout, ServedTask, Size

__all__ = ["TASK", "PosePostprocess"]


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
    postprocess = PosePostprocess
    feedback = FeedbackLayout("points.csv", "points")
    onnx_output = "coords"

    def labels(self, postprocess: PosePostprocess) -> tuple[str, ...]:
        return postprocess.points

    def outputs_per_item(self, postprocess: PosePostprocess) -> int:
        return 2 * len(postprocess.points)


TASK = PoseTask()
