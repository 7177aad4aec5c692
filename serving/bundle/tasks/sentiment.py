"""Text sentiment (ULMFiT-style classifier on token ids): a label with every class's probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.bundle.tasks.single_label import SingleLabelPostprocess, SingleLabelTask
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["TASK", "SentimentPostprocess"]

SentimentPostprocess = SingleLabelPostprocess  # the name bundles of format 1 pickled


class SentimentTask(SingleLabelTask):
    name = "sentiment"
    call = "Sentiment"
    takes = "texts"

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.SentimentResponse:
        return pb.SentimentResponse(
            results=[
                pb.SentimentResult(
                    label=a["label"],
                    probability=a["scores"][a["label"]],
                    probabilities=[
                        pb.LabelScore(label=label, score=a["scores"][label]) for label in manifest.labels
                    ],
                )
                for a in answers
            ]
        )


TASK = SentimentTask()
