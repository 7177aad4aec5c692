"""What each task answers, as named V2 tensors: the metadata clients read and the tensors they get.

The typed API answers in its own messages; this is the KServe V2 side. A new task adds its entry here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.engine import ServedModel
from serving.pipeline import MultiLabelPostprocess, SegmentationPostprocess, Size
from serving.status import RequestError
from serving.tensors import pack_bytes, to_raw
from serving.text_pipeline import SentimentPostprocess

__all__ = [
    "IMAGES",
    "LABEL",
    "MASK",
    "PIXELS",
    "POINTS",
    "PROBABILITIES",
    "TEXTS",
    "Tensor",
    "WireTensor",
    "check_sizes",
    "encode_outputs",
    "input_tensors",
    "output_tensors",
]

IMAGES, PIXELS, TEXTS = "images", "pixels", "texts"
MASK, POINTS = "mask", "points"
PROBABILITIES, LABEL = "probabilities", "label"


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
    """Encoded images (the server prepares them) or an already-prepared float32 batch; UTF-8 texts."""
    shape = model.input_shape
    if shape is None:
        return [WireTensor(TEXTS, "BYTES", (-1,))]
    return [
        WireTensor(IMAGES, "BYTES", (-1,)),
        WireTensor(PIXELS, "FP32", (-1, shape.channels, shape.height, shape.width)),
    ]


def output_tensors(model: ServedModel) -> list[WireTensor]:
    manifest = model.bundle.manifest
    if model.task == "multilabel":
        return [
            WireTensor("scores", "FP32", (-1, len(manifest.labels))),
            WireTensor("labels", "BYTES", (-1,)),
        ]
    if model.task == "segmentation":
        return [WireTensor(MASK, "UINT8", (-1, -1, -1))]
    if model.task == "pose":
        return [WireTensor(POINTS, "FP32", (-1, len(manifest.labels), 2))]
    if model.task == "sentiment":
        return [
            WireTensor(PROBABILITIES, "FP32", (-1, len(manifest.labels))),
            WireTensor(LABEL, "BYTES", (-1,)),
        ]
    raise NotImplementedError(f"task {model.task!r} has no V2 outputs yet")


def check_sizes(model: ServedModel, sizes: Sequence[Size]) -> None:
    """A mask tensor is N×H×W: the images of one segmentation request must share one size."""
    if model.task == "segmentation" and len(set(sizes)) > 1:
        shown_sizes = sorted({f"{w}x{h}" for h, w in sizes})[:4]
        raise RequestError(
            f"the images of one request must share one size for the N×H×W {MASK!r} output; "
            f"got {', '.join(shown_sizes)} (send them in separate requests, or use Tasks.Segment)"
        )


def encode_outputs(model: ServedModel, outputs: np.ndarray, sizes: Sequence[Size]) -> dict[str, Tensor]:
    """Every V2 output for the network's raw `outputs` (one row per item), by name; `sizes` are
    the items' original (height, width), so masks and points are in the caller's pixels."""
    n = len(outputs)
    post = model.bundle.pipeline.postprocess
    if isinstance(post, MultiLabelPostprocess):
        scores = post.scores(outputs)
        return {
            "scores": Tensor(WireTensor("scores", "FP32", (n, scores.shape[1])), to_raw(scores, "FP32")),
            # Planet-style: the labels over their thresholds, space-separated ("" when none is).
            "labels": Tensor(
                WireTensor("labels", "BYTES", (n,)),
                pack_bytes([" ".join(on).encode() for on in post.on_labels(scores)]),
            ),
        }
    if isinstance(post, SegmentationPostprocess):
        masks = np.stack(post.masks(outputs, sizes))
        return {MASK: Tensor(WireTensor(MASK, "UINT8", masks.shape), to_raw(masks, "UINT8"))}
    if isinstance(post, SentimentPostprocess):
        probabilities = post.probabilities(outputs)
        labels = [post.labels[int(i)].encode() for i in probabilities.argmax(axis=1)]
        return {
            PROBABILITIES: Tensor(
                WireTensor(PROBABILITIES, "FP32", probabilities.shape), to_raw(probabilities, "FP32")
            ),
            LABEL: Tensor(WireTensor(LABEL, "BYTES", (n,)), pack_bytes(labels)),
        }
    points = post.pixels(outputs, sizes)
    return {POINTS: Tensor(WireTensor(POINTS, "FP32", points.shape), to_raw(points, "FP32"))}
