"""The KServe V2 inference service (`inference.GRPCInferenceService`), as tritonclient speaks it.

A request carries one input: `images`, a BYTES tensor of encoded images the server prepares with
the bundle's own pipeline, or `pixels`, an FP32 tensor already prepared (N, C, H, W). Its contents
arrive raw (what tritonclient sends) or typed, never mixed. Numeric outputs always go back raw.
"""

from __future__ import annotations

import grpc
import numpy as np

from serving import __version__
from serving.engine import ServedModel
from serving.metrics import ServerMetrics
from serving.outputs import IMAGES, PIXELS, encode_outputs, input_tensors, output_tensors
from serving.quoting import shown
from serving.repository import ModelRepository
from serving.status import RequestError, answer
from serving.tensors import element_count, from_raw, unpack_bytes
from serving.wire import inference_pb2 as pb
from serving.wire.inference_pb2_grpc import GRPCInferenceServiceServicer

__all__ = ["InferenceService"]

SERVER_NAME = "serve-kit"
EXTENSIONS: list[
    str
] = []  # the core protocol only; Triton's extensions (model config, statistics) are not served
Request = pb.ModelInferRequest


class InferenceService(GRPCInferenceServiceServicer):
    def __init__(self, repository: ModelRepository, metrics: ServerMetrics) -> None:
        self.repository, self.metrics = repository, metrics
        self.draining = False

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready())

    def ready(self) -> bool:
        """Ready while not draining and serving at least one model (a failed one does not stop the rest)."""
        return not self.draining and any(self.repository.ready(name) for name in self.repository.models)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.repository.ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def describe(model: ServedModel) -> pb.ModelMetadataResponse:
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=model.name,
                versions=[str(model.version)],
                platform=f"serve-kit_{model.runtime.name}",
                inputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in input_tensors(model)
                ],
                outputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in output_tensors(model)
                ],
            )

        return await answer(self.repository, self.metrics, context, request.name, request.version, describe)

    async def ModelInfer(self, request: Request, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        async def infer(model: ServedModel) -> pb.ModelInferResponse:
            wanted = requested_outputs(request, model)
            items = await read_input(request, model)
            outputs = await model.infer(items, queue_timeout(request, context))
            encoded = encode_outputs(model, model.postprocess(outputs))
            response = pb.ModelInferResponse(
                model_name=model.name, model_version=str(model.version), id=request.id
            )
            for name in wanted:
                tensor = encoded[name]
                response.outputs.add(name=name, datatype=tensor.spec.datatype, shape=tensor.spec.shape)
                response.raw_output_contents.append(tensor.raw)
            return response

        return await answer(
            self.repository, self.metrics, context, request.model_name, request.model_version, infer
        )


async def read_input(request: Request, model: ServedModel) -> list[np.ndarray]:
    """The request's one input as prepared items, every disagreement named.

    Cheap checks come first (names, ranks, counts, room in the queue), so a request that cannot
    succeed costs no decoding, and nothing a client declares is allocated before it is checked."""
    names = {t.name: t for t in input_tensors(model)}
    expected = " or ".join(f"{t.name!r} ({t.datatype} {list(t.shape)})" for t in names.values())
    if len(request.inputs) != 1:
        raise RequestError(f"expected exactly one input, {expected}; got {len(request.inputs)}")
    tensor = request.inputs[0]
    name = shown(tensor.name)
    spec = names.get(tensor.name)
    if spec is None:
        raise RequestError(f"unknown input {name}; model {model.name!r} takes {expected}")
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
    model.admit(shape[0])

    if tensor.name == IMAGES:
        if typed:
            images = list(tensor.contents.bytes_contents)
            if len(images) != shape[0]:
                raise RequestError(
                    f"input {IMAGES!r}: shape {shape} needs {shape[0]} elements, got {len(images)}"
                )
        else:
            images = unpack_bytes(tensor.name, shape, request.raw_input_contents[0])
        return await model.prepare_images(images)

    if typed:
        values, count = tensor.contents.fp32_contents, element_count(tensor.name, shape)
        if len(values) != count:
            raise RequestError(f"input {PIXELS!r}: shape {shape} needs {count} values, got {len(values)}")
        batch = np.asarray(values, np.float32).reshape(shape)
    else:
        batch = from_raw(tensor.name, tensor.datatype, shape, request.raw_input_contents[0])
    return list(batch)


def check_shape(name: str, shape: list[int], expected: tuple[int, ...]) -> None:
    """`shape` against the advertised one (-1: any size); BYTES images may also come as [N, 1]."""
    if name == IMAGES and len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]
    fits = len(shape) == len(expected) and all(e in (-1, d) for d, e in zip(shape, expected, strict=True))
    if not fits or any(d < 0 for d in shape):
        want = list(expected) if name != IMAGES else "[N] or [N, 1]"
        raise RequestError(f"input {name!r} must have shape {want} (-1: any), got {shown(shape)}")


def requested_outputs(request: Request, model: ServedModel) -> list[str]:
    available = [t.name for t in output_tensors(model)]
    wanted = [o.name for o in request.outputs] or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise RequestError(f"unknown output {shown(unknown[0])}; model {model.name!r} returns {available}")
    if len(set(wanted)) != len(wanted):
        raise RequestError(f"an output is requested twice; ask for each of {available} at most once")
    return wanted


def queue_timeout(request: Request, context: grpc.aio.ServicerContext) -> float | None:
    """Seconds a request may wait: the sooner of its gRPC deadline and its `timeout` parameter (µs)."""
    limits = []
    remaining = context.time_remaining()
    if remaining is not None:
        limits.append(remaining)
    timeout = request.parameters.get("timeout")
    if timeout is not None and timeout.WhichOneof("parameter_choice") in ("int64_param", "uint64_param"):
        micros = timeout.int64_param or timeout.uint64_param
        if micros > 0:
            limits.append(micros / 1e6)
    return min(limits, default=None)
