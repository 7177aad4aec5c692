"""Multi-label images on the wire: V2 `scores` and space-separated `labels`, `Classify` answers,
tag corrections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.pipeline import Size
from serving.bundle.quoting import shown
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.server.codecs.base import FeedbackError, OutputTensor, Record, TaskCodec, label_scores
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["CODEC"]


class MultiLabelCodec(TaskCodec):
    name = "multilabel"
    call = "Classify"
    ranked_output = "scores"

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
                pb.Classification(labels=a["labels"], scores=label_scores(a["scores"], manifest.labels))
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


CODEC = MultiLabelCodec()
