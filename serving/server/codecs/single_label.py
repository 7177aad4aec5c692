"""One label out of many on the wire (image classes, text sentiment): V2 `probabilities` and the
top `label`; each task keeps its own module for its typed-API call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from serving.bundle.pipeline import Size
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from serving.server.codecs.base import OutputTensor, TaskCodec

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest

__all__ = ["LABEL", "PROBABILITIES", "SingleLabelCodec"]

PROBABILITIES, LABEL = "probabilities", "label"


class SingleLabelCodec(TaskCodec):
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
