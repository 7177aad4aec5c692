"""Reading a KServe V2 `ModelInferRequest`: its one input as prepared items, checked field by field.

This module reads the request's fields and never imports the generated stubs, so any message with
the V2 schema works: ours on the server, tritonclient's in the fuzz tests (the two cannot share a
process; both register `inference.*` in protobuf's global pool). Every refusal is a `RequestError`,
`TensorError`, `ItemError` or an admission error, each with its gRPC status in
`serving/server/error_status.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.bundle.pipeline import Size
from serving.bundle.quoting import shown
from serving.server.error_status import RequestError
from serving.server.served_model import Item, ServedModel
from serving.server.tensors import element_count, from_raw, unpack_bytes
from serving.server.v2_outputs import IMAGES, PIXELS, TEXTS, tensors_of

__all__ = ["check_shape", "queue_timeout", "read_input", "requested_outputs"]

Request = Any  # an `inference.ModelInferRequest`, from whichever generated module


async def read_input(request: Request, model: ServedModel) -> tuple[list[Item], list[Size]]:
    """The request's one input as prepared items and each item's original (height, width), every
    disagreement named.

    Cheap checks come first (names, ranks, counts, room in the queue), so a request that cannot
    succeed costs no decoding, and nothing a client declares is allocated before it is checked."""
    names = tensors_of(model).inputs

    def expected() -> str:  # only an error message needs it: not built on the hot path
        return " or ".join(f"{t.name!r} ({t.datatype} {list(t.shape)})" for t in names.values())

    if len(request.inputs) != 1:
        raise RequestError(f"expected exactly one input, {expected()}; got {len(request.inputs)}")
    tensor = request.inputs[0]
    name = shown(tensor.name)
    spec = names.get(tensor.name)
    if spec is None:
        raise RequestError(f"unknown input {name}; model {model.name!r} takes {expected()}")
    if tensor.datatype != spec.datatype:
        raise RequestError(
            f"input {name} must be {spec.datatype}, got {shown(tensor.datatype) or 'no datatype'}"
        )
    shape = list(tensor.shape)
    check_shape(tensor.name, shape, spec.shape)
    if element_count(tensor.name, shape) == 0:
        raise RequestError(f"input {name} is empty (shape {shape})")
    typed = tensor.HasField("contents")
    if request.raw_input_contents and typed:
        raise RequestError(f"input {name} has typed contents and the request has raw contents; send one")
    if not request.raw_input_contents and not typed:
        raise RequestError(f"input {name} has no contents (neither raw_input_contents nor contents)")
    if len(request.raw_input_contents) > 1:
        raise RequestError(f"{len(request.raw_input_contents)} raw_input_contents for 1 input")
    model.admit(shape[0], sum(map(len, request.raw_input_contents)) or tensor.ByteSize())

    if tensor.name in (IMAGES, TEXTS):
        if typed:
            elements = list(tensor.contents.bytes_contents)
            if len(elements) != shape[0]:
                raise RequestError(
                    f"input {name}: shape {shape} needs {shape[0]} elements, got {len(elements)}"
                )
        else:
            elements = unpack_bytes(tensor.name, shape, request.raw_input_contents[0])
        return await model.prepare(elements)

    if typed:
        values, count = tensor.contents.fp32_contents, element_count(tensor.name, shape)
        if len(values) != count:
            raise RequestError(f"input {PIXELS!r}: shape {shape} needs {count} values, got {len(values)}")
        batch = np.asarray(values, np.float32).reshape(shape)
    else:
        batch = from_raw(tensor.name, tensor.datatype, shape, request.raw_input_contents[0])
    return list(batch), [(int(shape[2]), int(shape[3]))] * len(batch)


def check_shape(name: str, shape: list[int], expected: tuple[int, ...]) -> None:
    """`shape` against the advertised one (-1: any size); BYTES inputs, advertised [-1, 1], may also
    come as [N]."""
    seen = [*shape, 1] if name in (IMAGES, TEXTS) and len(shape) == 1 else shape
    fits = len(seen) == len(expected) and all(e in (-1, d) for d, e in zip(seen, expected, strict=True))
    if not fits or any(d < 0 for d in seen):
        want = list(expected) if name not in (IMAGES, TEXTS) else "[N] or [N, 1]"
        raise RequestError(f"input {name!r} must have shape {want} (-1: any), got {shown(shape)}")


def requested_outputs(request: Request, model: ServedModel) -> list[tuple[str, int]]:
    """The outputs asked for (all, when none is named), each with its `classification` count (Triton's
    classification extension: the top k classes instead of the tensor; 0 when not asked)."""
    if not request.outputs:  # the usual request: every output, no classification
        return [(name, 0) for name in tensors_of(model).outputs]
    available = list(tensors_of(model).outputs)
    wanted = [(o.name, class_count(o, model)) for o in request.outputs]
    unknown = [name for name, _ in wanted if name not in available]
    if unknown:
        raise RequestError(f"unknown output {shown(unknown[0])}; model {model.name!r} returns {available}")
    if len({name for name, _ in wanted}) != len(wanted):
        raise RequestError(f"an output is requested twice; ask for each of {available} at most once")
    return wanted


def class_count(output: Any, model: ServedModel) -> int:
    """An output's `classification` parameter, checked: a positive count of an output with classes."""
    parameter = output.parameters.get("classification")
    if parameter is None:
        return 0
    if parameter.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise RequestError("the classification parameter must be an integer (the number of classes)")
    count = parameter.int64_param or parameter.uint64_param
    scores = model.codec.ranked_output
    if scores is None:
        raise RequestError(f"model {model.name!r} answers {model.task}, which has no classes to rank")
    if output.name != scores:
        raise RequestError(f"classification ranks the {scores!r} output, not {shown(output.name)}")
    if count < 1:
        raise RequestError(f"classification asks for {count} classes; ask for at least 1")
    return int(min(count, len(model.bundle.manifest.labels)))


def queue_timeout(request: Request, remaining: float | None) -> float | None:
    """Seconds a request may wait: the sooner of the caller's deadline (`remaining` seconds) and the
    request's `timeout` parameter (µs)."""
    limits = []
    if remaining is not None:
        limits.append(remaining)
    timeout = request.parameters.get("timeout")
    if timeout is not None and timeout.WhichOneof("parameter_choice") in ("int64_param", "uint64_param"):
        micros = timeout.int64_param or timeout.uint64_param
        if micros > 0:
            limits.append(micros / 1e6)
    return min(limits, default=None)
