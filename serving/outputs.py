"""What each task answers, as named V2 tensors: the metadata clients read and the tensors they get.

The typed API answers in its own messages; this is the KServe V2 side. A new task adds its entry here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def encode_outputs(model: ServedModel, answers: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Every output of `answers` (one per item), by name."""
    n = len(answers)
    if model.task == "multilabel":
        labels = model.bundle.manifest.labels
        scores = np.array([[a["scores"][label] for label in labels] for a in answers], np.float32)
        return {
            "scores": Tensor(WireTensor("scores", "FP32", (n, len(labels))), to_raw(scores, "FP32")),
            # Planet-style: the labels over their thresholds, space-separated ("" when none is).
            "labels": Tensor(
                WireTensor("labels", "BYTES", (n,)),
                pack_bytes([" ".join(a["labels"]).encode() for a in answers]),
            ),
        }
    raise NotImplementedError(f"task {model.task!r} has no V2 outputs yet")
