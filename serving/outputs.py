"""What each task answers, as named V2 tensors: the metadata clients read and the tensors they get.

The typed API answers in its own messages; this is the KServe V2 side. A new task adds its entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.engine import ServedModel
from serving.tensors import pack_bytes, to_raw

__all__ = ["IMAGES", "PIXELS", "Tensor", "WireTensor", "encode_outputs", "input_tensors", "output_tensors"]

IMAGES, PIXELS = "images", "pixels"


@dataclass(frozen=True)
class WireTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    spec: WireTensor
    raw: bytes


def input_tensors(model: ServedModel) -> list[WireTensor]:
    """Encoded images (the server prepares them) or an already-prepared float32 batch."""
    shape = model.input_shape
    return [
        WireTensor(IMAGES, "BYTES", (-1,)),
        WireTensor(PIXELS, "FP32", (-1, shape.channels, shape.height, shape.width)),
    ]


def output_tensors(model: ServedModel) -> list[WireTensor]:
    if model.task == "multilabel":
        return [
            WireTensor("scores", "FP32", (-1, len(model.bundle.manifest.labels))),
            WireTensor("labels", "BYTES", (-1,)),
        ]
    raise NotImplementedError(f"task {model.task!r} has no V2 outputs yet")


def encode_outputs(model: ServedModel, outputs: np.ndarray) -> dict[str, Tensor]:
    """Every V2 output for the network's raw `outputs` (one row per item), by name."""
    n = len(outputs)
    if model.task == "multilabel":
        postprocess = model.bundle.pipeline.postprocess
        scores = postprocess.scores(outputs)
        return {
            "scores": Tensor(WireTensor("scores", "FP32", (n, scores.shape[1])), to_raw(scores, "FP32")),
            # Planet-style: the labels over their thresholds, space-separated ("" when none is).
            "labels": Tensor(
                WireTensor("labels", "BYTES", (n,)),
                pack_bytes([" ".join(on).encode() for on in postprocess.on_labels(scores)]),
            ),
        }
    raise NotImplementedError(f"task {model.task!r} has no V2 outputs yet")
