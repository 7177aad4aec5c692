"""The KServe V2 inference service (`inference.GRPCInferenceService`), as tritonclient speaks it.

A request carries one input: `images`, a BYTES tensor of encoded images the server prepares with
the bundle's own pipeline, or `pixels`, an FP32 tensor already prepared (N, C, H, W). Its contents
arrive raw (what tritonclient sends) or typed, never mixed. Numeric outputs always go back raw.
"""

from __future__ import annotations

import grpc

from serving import __version__
from serving.server.error_status import answer
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelRepository
from serving.server.served_model import ServedModel
from serving.server.v2_outputs import (
    check_sizes,
    encode_outputs,
    input_tensors,
    output_tensors,
    top_classes,
)
from serving.server.v2_requests import queue_timeout, read_input, requested_outputs
from serving.wire import inference_pb2 as pb
from serving.wire.inference_pb2_grpc import GRPCInferenceServiceServicer

__all__ = ["InferenceService"]

SERVER_NAME = "serve-kit"
# Triton's extensions served beside the core protocol.
EXTENSIONS: list[str] = ["classification"]


class InferenceService(GRPCInferenceServiceServicer):
    def __init__(self, repository: ModelRepository, metrics: ServerMetrics) -> None:
        self.repository, self.metrics = repository, metrics

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
        return not self.repository.draining and any(
            self.repository.ready(name) for name in self.repository.models
        )

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

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def infer(model: ServedModel) -> pb.ModelInferResponse:
            wanted = requested_outputs(request, model)
            items, sizes = await read_input(request, model)
            check_sizes(model, sizes)
            outputs = await model.infer(items, queue_timeout(request, context))
            encoded = encode_outputs(model, outputs, sizes)
            response = pb.ModelInferResponse(
                model_name=model.name, model_version=str(model.version), id=request.id
            )
            for name, classes in wanted:
                tensor = encoded[name] if not classes else top_classes(model, outputs, classes)
                response.outputs.add(name=name, datatype=tensor.spec.datatype, shape=tensor.spec.shape)
                response.raw_output_contents.append(tensor.raw)
            return response

        return await answer(
            self.repository, self.metrics, context, request.model_name, request.model_version, infer
        )
