"""Multi-label images (planet-style tags): independent sigmoid scores, a threshold per label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.scores import sigmoid
from serving.bundle.tasks.base import FeedbackLayout, ServedTask, Size

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest
    from serving.bundle.pipeline import Pipeline

__all__ = ["TASK", "MultiLabelPostprocess"]


@dataclass(frozen=True)
class MultiLabelPostprocess:
    """Sigmoid scores; a label is on when its score exceeds its threshold."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """(N, labels) sigmoid scores of the network's logits."""
        return sigmoid(outputs)

    def on_labels(self, scores: np.ndarray) -> list[list[str]]:
        """Per item, the labels whose score exceeds their threshold, in label order."""
        limits = np.asarray(self.thresholds)
        return [[label for label, on in zip(self.labels, row > limits, strict=True) if on] for row in scores]

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size] = ()) -> list[dict[str, Any]]:
        """Labels and scores; `sizes` are not needed (an image's tags do not depend on its size)."""
        scores = self.scores(outputs)
        return [
            {"labels": on, "scores": {label: float(s) for label, s in zip(self.labels, row, strict=True)}}
            for on, row in zip(self.on_labels(scores), scores, strict=True)
        ]


class MultiLabelTask(ServedTask):
    name = "multilabel"
    postprocess = MultiLabelPostprocess
    feedback = FeedbackLayout("labels.csv", "labels")

    def thresholds(self, postprocess: MultiLabelPostprocess) -> list[float]:
        return list(postprocess.thresholds)

    def problems(self, manifest: Manifest, pipeline: Pipeline) -> list[str]:
        post: MultiLabelPostprocess = pipeline.postprocess
        if not all(0 < t < 1 for t in post.thresholds):
            return [f"thresholds outside (0, 1): {list(post.thresholds)}"]
        if len(post.thresholds) != len(post.labels) or (
            manifest.thresholds is not None and list(post.thresholds) != manifest.thresholds
        ):
            return ["thresholds that differ from the manifest's"]
        return []


TASK = MultiLabelTask()
