"""Single-label image classification (ImageNet-style folders): one class per image, with every
class's probability. Answered by the typed `Classify` call as a one-label classification."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.bundle.tasks.single_label import SingleLabelTask
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["TASK"]


class ClassifyTask(SingleLabelTask):
    name = "classify"
    call = "Classify"

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.ClassifyResponse:
        return pb.ClassifyResponse(
            results=[
                pb.Classification(
                    labels=[a["label"]],
                    scores=[
                        pb.LabelScore(label=label, score=a["scores"][label]) for label in manifest.labels
                    ],
                )
                for a in answers
            ]
        )


TASK = ClassifyTask()
