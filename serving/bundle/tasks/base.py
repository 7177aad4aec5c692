"""What every served task answers: the one contract a new task implements, and nothing else.

A task module (`multilabel.py`, `segmentation.py`, ...) holds everything that differs by task on the
serving side: its postprocess (pickled in the bundle), its consistency checks, its KServe V2 output
tensors, its JSON answer (TorchServe, `train-kit predict`), its typed-API answer and its feedback
record. The rest of `serving` asks the registry (`serving.bundle.tasks.task_for`) and never branches
on a task's name.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from google.protobuf.message import Message

from serving.bundle.images import encode_mask_png

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest
    from serving.bundle.pipeline import Pipeline

__all__ = [
    "Answer",
    "FeedbackError",
    "FeedbackLayout",
    "OutputTensor",
    "Record",
    "ServedTask",
    "Size",
    "json_mask",
    "label_scores",
]

Size = tuple[int, int]
"""An image's (height, width) in pixels."""
Answer = dict[str, Any]
"""One item's answer in the task's own terms (`labels`/`scores`, `mask`, `points`, `label`/`scores`)."""


class FeedbackError(ValueError):
    """The correction does not fit the model or its item (gRPC: INVALID_ARGUMENT); nothing was written."""


@dataclass(frozen=True)
class OutputTensor:
    """A V2 output as ModelMetadata describes it: name, datatype, shape (-1 for a free axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FeedbackLayout:
    """Where a task's corrections go in the data block layout `train-kit finetune` reads: the CSV
    index file, and the one correction field (`labels`, `mask_png` or `points`) a record carries."""

    csv: str
    field: Literal["labels", "mask_png", "points"]


@dataclass(frozen=True)
class Record:
    """A checked correction, ready to store: the image's file extension and the CSV row's values."""

    image: bytes
    extension: str
    row: dict[str, str]
    mask_png: bytes = b""


class ServedTask:
    """One task's serving side. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    call: ClassVar[str]
    """The typed API's call that answers this task (`Classify`, `Segment`, `Pose`, `Sentiment`)."""
    takes: ClassVar[Literal["images", "texts"]] = "images"
    postprocess: ClassVar[type]
    """The postprocess class a bundle of this task pickles (allow-listed for the unpickler)."""
    feedback: ClassVar[FeedbackLayout | None] = None
    onnx_output: ClassVar[str] = "logits"
    """The ONNX graph's output name."""
    spatial: ClassVar[bool] = False
    """The network takes any height and width (a U-Net): the ONNX graph's H and W axes are free."""

    # -- the bundle ---------------------------------------------------------------------------
    def labels(self, postprocess: Any) -> tuple[str, ...]:
        """What the manifest lists as `labels`: tags, classes, codes or point names."""
        return tuple(postprocess.labels)

    def outputs_per_item(self, postprocess: Any) -> int:
        """A CNN head's outputs per item; a U-Net or text network checks its own spec."""
        return len(self.labels(postprocess))

    def thresholds(self, postprocess: Any) -> list[float] | None:
        """What the manifest lists as `thresholds` (multi-label only)."""
        return None

    def problems(self, manifest: Manifest, pipeline: Pipeline) -> list[str]:
        """What is wrong with a loaded pipeline beyond the generic checks (none by default)."""
        return []

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

    ranked_output: ClassVar[str | None] = None
    """The V2 output of one score per class, which Triton's classification extension ranks (None:
    the task has no classes)."""

    def class_scores(self, postprocess: Any, outputs: np.ndarray) -> np.ndarray:
        """(N, classes) scores of `ranked_output`, for the classification extension."""
        raise NotImplementedError(f"{self.name} has no classes to rank")

    # -- answers --------------------------------------------------------------------------------
    def json_answer(self, manifest: Manifest, answer: Answer) -> Answer:
        """The answer as JSON (TorchServe, `train-kit predict`): as it is, unless it holds arrays."""
        return answer

    def typed_response(self, manifest: Manifest, answers: list[Answer]) -> Message:
        """The typed API's response message for `answers`, without its `model` (the caller sets it)."""
        raise NotImplementedError

    # -- feedback -------------------------------------------------------------------------------
    def feedback_record(
        self, image: bytes, extension: str, answer: Any, manifest: Manifest, size: Size
    ) -> Record:
        """A correction's CSV row (and files), checked against the model; `size` is the image's."""
        raise FeedbackError(f"model {manifest.name!r} answers {self.name}; it takes no feedback")


def label_scores(scores: dict[str, float], labels: Sequence[str]) -> list[Any]:
    """Every label's score, in the model's label order, as the typed API's `LabelScore`s."""
    from serving.wire import tasks_pb2 as pb

    return [pb.LabelScore(label=label, score=scores[label]) for label in labels]


def json_mask(mask: np.ndarray, classes: Sequence[str]) -> Answer:
    """A class-id mask as JSON: base64 PNG with its size and class names."""
    return {
        "mask_png": base64.b64encode(encode_mask_png(mask)).decode("ascii"),
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "classes": list(classes),
    }
