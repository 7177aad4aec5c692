"""The KServe V2 side of a served model: the tensors it takes and answers, as raw wire contents.

What each task answers comes from its codec (`serving.server.codecs`); this module only names the
inputs every model of a kind takes and turns the task's arrays into V2's raw encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np

from serving.bundle.pipeline import Size
from serving.server.codecs import OutputTensor
from serving.server.error_status import RequestError
from serving.server.served_model import ServedModel
from serving.server.tensors import pack_bytes, to_raw

__all__ = [
    "IMAGES",
    "PIXELS",
    "TEXTS",
    "Tensor",
    "check_sizes",
    "encode_outputs",
    "input_tensors",
    "output_tensors",
    "tensors_of",
]

IMAGES, PIXELS, TEXTS = "images", "pixels", "texts"


@dataclass(frozen=True)
class Tensor:
    spec: OutputTensor
    raw: bytes


@dataclass(frozen=True)
class V2Tensors:
    """A served model's V2 inputs and outputs by name, in the order metadata lists them."""

    inputs: dict[str, OutputTensor]
    outputs: dict[str, OutputTensor]


_TENSORS: WeakKeyDictionary[ServedModel, V2Tensors] = WeakKeyDictionary()


def tensors_of(model: ServedModel) -> V2Tensors:
    """Worked out once per served model (every request reads them), forgotten with the model."""
    tensors = _TENSORS.get(model)
    if tensors is None:
        inputs = {t.name: t for t in _input_tensors(model)}
        outputs = {t.name: t for t in model.codec.v2_outputs(model.bundle.manifest)}
        tensors = _TENSORS[model] = V2Tensors(inputs, outputs)
    return tensors


def _input_tensors(model: ServedModel) -> list[OutputTensor]:
    """Encoded images (the server prepares them) or an already-prepared float32 batch; UTF-8 texts.

    A BYTES input is described as Triton describes a batching model's input of dims [1]: [-1, 1]
    (perf_analyzer reads the shape past the batch axis from here); [N] is taken as well."""
    shape = model.input_shape
    if shape is None:
        return [OutputTensor(TEXTS, "BYTES", (-1, 1))]
    return [
        OutputTensor(IMAGES, "BYTES", (-1, 1)),
        OutputTensor(PIXELS, "FP32", (-1, shape.channels, shape.height, shape.width)),
    ]


def input_tensors(model: ServedModel) -> list[OutputTensor]:
    return list(tensors_of(model).inputs.values())


def output_tensors(model: ServedModel) -> list[OutputTensor]:
    return list(tensors_of(model).outputs.values())


def top_classes(model: ServedModel, outputs: np.ndarray, k: int) -> Tensor:
    """Triton's classification answer: per item, the k best classes as BYTES "score:index:label"."""
    scores = model.codec.class_scores(model.bundle.pipeline.postprocess, outputs)
    labels = model.bundle.manifest.labels
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    elements = [
        f"{row[i]:f}:{i}:{labels[i]}".encode() for row, top in zip(scores, best, strict=True) for i in top
    ]
    return Tensor(OutputTensor("", "BYTES", (len(scores), k)), pack_bytes(elements))


def check_sizes(model: ServedModel, sizes: Sequence[Size]) -> None:
    """Images that cannot share the task's output tensors are refused before any inference."""
    try:
        model.codec.check_request_sizes(sizes)
    except ValueError as err:
        raise RequestError(str(err)) from None


def encode_outputs(model: ServedModel, outputs: np.ndarray, sizes: Sequence[Size]) -> dict[str, Tensor]:
    """Every V2 output for the network's raw `outputs` (one row per item), by name; `sizes` are
    the items' original (height, width), so masks and points are in the caller's pixels."""
    specs = tensors_of(model).outputs
    encoded = model.codec.v2_encode(model.bundle.pipeline.postprocess, outputs, sizes)
    tensors = {}
    for name, value in encoded.items():
        datatype = specs[name].datatype
        if isinstance(value, list):
            tensors[name] = Tensor(OutputTensor(name, datatype, (len(value),)), pack_bytes(value))
        else:
            tensors[name] = Tensor(OutputTensor(name, datatype, value.shape), to_raw(value, datatype))
    return tensors
