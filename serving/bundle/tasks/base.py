"""What a task's bundle is and does offline: the one contract a new task implements here.

A task module (`multilabel.py`, `segmentation.py`, ...) holds what differs by task in a bundle: its
postprocess (pickled in the bundle), its consistency checks, the ONNX graph's output, and its
answers as plain JSON values (TorchServe, `train-kit predict`). No protocol: what an answer looks
like as V2 tensors, typed-API messages or feedback records is the server's (`serving.server.codecs`).
The rest of the code asks the registry (`serving.bundle.tasks.task_for`) and never branches on a
task's name.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from serving.bundle.flow import Size
from serving.bundle.images import encode_mask_png

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest
    from serving.bundle.pipeline import Pipeline

__all__ = ["Answer", "FeedbackLayout", "ServedTask", "Size", "json_mask"]

Answer = dict[str, Any]
"""One item's answer in the task's own terms (`labels`/`scores`, `mask`, `points`, `label`/`scores`)."""


@dataclass(frozen=True)
class FeedbackLayout:
    """Where a task's corrections go in the data block layout `train-kit finetune` reads: the CSV
    index file, and the one correction field (`labels`, `mask_png` or `points`) a record carries."""

    csv: str
    field: Literal["labels", "mask_png", "points"]


class ServedTask:
    """One task's bundle side. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
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

    # -- answers --------------------------------------------------------------------------------
    def json_answer(self, manifest: Manifest, answer: Answer) -> Answer:
        """The answer as JSON (TorchServe, `train-kit predict`): as it is, unless it holds arrays."""
        return answer


def json_mask(mask: np.ndarray, classes: Sequence[str]) -> Answer:
    """A class-id mask as JSON: base64 PNG with its size and class names."""
    return {
        "mask_png": base64.b64encode(encode_mask_png(mask)).decode("ascii"),
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "classes": list(classes),
    }
