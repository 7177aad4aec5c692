"""Text sentiment on the wire: the typed `Sentiment` call answers the label, its probability and
every class's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.server.codecs.base import label_scores
from serving.server.codecs.single_label import SingleLabelCodec
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["CODEC"]


class SentimentCodec(SingleLabelCodec):
    name = "sentiment"
    call = "Sentiment"

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.SentimentResponse:
        return pb.SentimentResponse(
            results=[
                pb.SentimentResult(
                    label=a["label"],
                    probability=a["scores"][a["label"]],
                    probabilities=label_scores(a["scores"], manifest.labels),
                )
                for a in answers
            ]
        )


CODEC = SentimentCodec()
