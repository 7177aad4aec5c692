"""The protocol side of each task: a task's name → its codec (`TaskCodec`). One module per task,
the twin of its bundle module in `serving.bundle.tasks`."""

from __future__ import annotations

from serving.bundle.errors import BundleError
from serving.server.codecs import classify, multilabel, pose, segmentation, sentiment
from serving.server.codecs.base import FeedbackError, OutputTensor, Record, TaskCodec

__all__ = ["CODECS", "FeedbackError", "OutputTensor", "Record", "TaskCodec", "codec_for"]

CODECS: dict[str, TaskCodec] = {
    codec.name: codec
    for codec in (multilabel.CODEC, segmentation.CODEC, pose.CODEC, sentiment.CODEC, classify.CODEC)
}


def codec_for(name: str) -> TaskCodec:
    """The codec of task `name`; a bundle task without one is a `BundleError` (this server cannot
    answer it on the wire)."""
    try:
        return CODECS[name]
    except KeyError:
        raise BundleError(
            f"task {name!r} has no protocol codec in this server ({', '.join(CODECS)})"
        ) from None
