"""Single-label image classes on the wire: the typed `Classify` call answers a one-label
classification."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.server.codecs.base import label_scores
from serving.server.codecs.single_label import SingleLabelCodec
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["CODEC"]


class ClassifyCodec(SingleLabelCodec):
    name = "classify"
    call = "Classify"

    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> pb.ClassifyResponse:
        return pb.ClassifyResponse(
            results=[
                pb.Classification(labels=[a["label"]], scores=label_scores(a["scores"], manifest.labels))
                for a in answers
            ]
        )


CODEC = ClassifyCodec()
