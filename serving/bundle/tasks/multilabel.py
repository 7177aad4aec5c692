"""Multi-label images (planet-style tags): independent sigmoid scores, a threshold per label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.quoting import shown
from serving.bundle.scores import sigmoid
from serving.bundle.tasks.base import (
    FeedbackError,
    FeedbackLayout,
    OutputTensor,
    Record,
    ServedTask,
    Size,
)
from serving.wire import tasks_pb2 as pb

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
    call = "Classify"
    postprocess = MultiLabelPostprocess
    feedback = FeedbackLayout("labels.csv", "labels")
    ranked_output = "scores"

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

    def v2_outputs(self, manifest: Manifest) -> list[OutputTensor]:
        return [
            OutputTensor("scores", "FP32", (-1, len(manifest.labels))),
            OutputTensor("labels", "BYTES", (-1,)),
        ]

    def v2_encode(
        self, postprocess: MultiLabelPostprocess, outputs: np.ndarray, sizes: Sequence[Size]
    ) -> dict[str, np.ndarray | list[bytes]]:
        scores = postprocess.scores(outputs)
        # Planet-style: the labels over their thresholds, space-separated ("" when none is).
        on = [" ".join(labels).encode() for labels in postprocess.on_labels(scores)]
        return {"scores": scores.astype(np.float32), "labels": on}

    def class_scores(self, postprocess: MultiLabelPostprocess, outputs: np.ndarray) -> np.ndarray:
        return postprocess.scores(outputs)

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.ClassifyResponse:
        return pb.ClassifyResponse(
            results=[
                pb.Classification(
                    labels=a["labels"],
                    scores=[
                        pb.LabelScore(label=label, score=a["scores"][label]) for label in manifest.labels
                    ],
                )
                for a in answers
            ]
        )

    def feedback_record(
        self, image: bytes, extension: str, answer: Sequence[str], manifest: Manifest, size: Size
    ) -> Record:
        known = manifest.labels
        unknown = [label for label in answer if label not in known]
        if unknown:
            raise FeedbackError(f"unknown label {shown(unknown[0])}; the model knows {known}")
        if len(set(answer)) != len(answer):
            raise FeedbackError("a label is given twice")
        tags = [label for label in known if label in answer]  # in the model's order
        return Record(image, extension, {"tags": " ".join(tags)})


TASK = MultiLabelTask()
