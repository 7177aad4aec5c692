"""What one task's answers look like on the wire: KServe V2 tensors, the typed API's messages, and
the feedback records a correction becomes.

The bundle (`serving.bundle.tasks`) says what a task answers, as plain Python values, and knows no
protocol; a codec here turns those answers (or the network's raw outputs) into each protocol's
form. One module per task, found through `serving.server.codecs.codec_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from google.protobuf.message import Message

from serving.bundle.pipeline import Size
from serving.wire import tasks_pb2 as pb

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["FeedbackError", "OutputTensor", "Record", "TaskCodec", "label_scores"]


class FeedbackError(ValueError):
    """The correction does not fit the model or its item (gRPC: INVALID_ARGUMENT); nothing was written."""


@dataclass(frozen=True)
class OutputTensor:
    """A V2 tensor as ModelMetadata describes it: name, datatype, shape (-1 for a free axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Record:
    """A checked correction, ready to store: the image's file extension and the CSV row's values."""

    image: bytes
    extension: str
    row: dict[str, str]
    mask_png: bytes = b""


class TaskCodec:
    """One task's answers on each protocol. Subclasses set the class attributes and override what
    differs; `name` is the bundle task's (`serving.bundle.tasks`)."""

    name: ClassVar[str]
    call: ClassVar[str]
    """The typed API's call that answers this task (`Classify`, `Segment`, `Pose`, `Sentiment`)."""
    ranked_output: ClassVar[str | None] = None
    """The V2 output of one score per class, which Triton's classification extension ranks (None:
    the task has no classes)."""

    # -- KServe V2 ----------------------------------------------------------------------------
    def v2_outputs(self, manifest: Manifest) -> list[OutputTensor]:
        raise NotImplementedError

    def v2_encode(
        self, postprocess: Any, outputs: np.ndarray, sizes: Sequence[Size]
    ) -> dict[str, np.ndarray | list[bytes]]:
        """Every V2 output for the network's raw `outputs`, by name: arrays, or bytes for BYTES."""
        raise NotImplementedError

    def check_request_sizes(self, sizes: Sequence[Size]) -> None:
        """Refuse (ValueError) a V2 request whose images cannot share one output tensor."""

    def class_scores(self, postprocess: Any, outputs: np.ndarray) -> np.ndarray:
        """(N, classes) scores of `ranked_output`, for the classification extension."""
        raise NotImplementedError(f"{self.name} has no classes to rank")

    # -- the typed API --------------------------------------------------------------------------
    def typed_response(self, manifest: Manifest, answers: list[dict[str, Any]]) -> Message:
        """The typed API's response message for `answers`, without its `model` (the caller sets it)."""
        raise NotImplementedError

    # -- feedback -------------------------------------------------------------------------------
    def feedback_record(
        self, image: bytes, extension: str, answer: Any, manifest: Manifest, size: Size
    ) -> Record:
        """A correction's CSV row (and files), checked against the model; `size` is the image's."""
        raise FeedbackError(f"model {manifest.name!r} answers {self.name}; it takes no feedback")


def label_scores(scores: dict[str, float], labels: Sequence[str]) -> list[pb.LabelScore]:
    """Every label's score, in the model's label order, as the typed API's `LabelScore`s."""
    return [pb.LabelScore(label=label, score=scores[label]) for label in labels]
