"""One label out of many (text sentiment, image classes): softmax probabilities, the top label.

Shared by the tasks that answer so; each keeps its own module for what differs (its input, its call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.scores import softmax
from serving.bundle.tasks.base import OutputTensor, ServedTask, Size

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["LABEL", "PROBABILITIES", "SingleLabelPostprocess", "SingleLabelTask"]

PROBABILITIES, LABEL = "probabilities", "label"


@dataclass(frozen=True)
class SingleLabelPostprocess:
    """Softmax over the classes; the answer is the most probable one."""

    labels: tuple[str, ...]

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs)

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The label and every class's probability per item (`sizes` do not matter)."""
        return [
            {
                "label": self.labels[int(row.argmax())],
                "scores": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
            }
            for row in self.probabilities(outputs)
        ]


class SingleLabelTask(ServedTask):
    postprocess = SingleLabelPostprocess
    ranked_output = PROBABILITIES

    def v2_outputs(self, manifest: Manifest) -> list[OutputTensor]:
        return [
            OutputTensor(PROBABILITIES, "FP32", (-1, len(manifest.labels))),
            OutputTensor(LABEL, "BYTES", (-1,)),
        ]

    def v2_encode(
        self, postprocess: SingleLabelPostprocess, outputs: np.ndarray, sizes: Sequence[Size]
    ) -> dict[str, np.ndarray | list[bytes]]:
        probabilities = postprocess.probabilities(outputs)
        labels = [postprocess.labels[int(i)].encode() for i in probabilities.argmax(axis=1)]
        return {PROBABILITIES: probabilities.astype(np.float32), LABEL: labels}

    def class_scores(self, postprocess: SingleLabelPostprocess, outputs: np.ndarray) -> np.ndarray:
        return postprocess.probabilities(outputs)
