"""The KServe V2 inference service over gRPC (`inference.GRPCInferenceService`), as tritonclient
speaks it: each call handed to the shared `V2Engine`, each `CallError` aborted with its status.

Triton's RPCs that serve-kit does not implement (streaming, shared memory, trace and log settings)
answer UNIMPLEMENTED with a message naming what is implemented (`NotImplementedHandler`), never
gRPC's bare "Method not found!".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from serving.server.error_status import grpc_answer
from serving.server.v2_engine import EXTENSIONS, V2Engine
from serving.wire import inference_pb2 as pb
from serving.wire.inference_pb2_grpc import GRPCInferenceServiceServicer

__all__ = ["InferenceService", "NotImplementedHandler"]

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


class InferenceService(GRPCInferenceServiceServicer):
    def __init__(self, engine: V2Engine) -> None:
        self.engine = engine

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.engine.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.engine.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.engine.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return self.engine.server_metadata()

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        return await grpc_answer(context, _now(self.engine.model_metadata, request.name, request.version))

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        return await grpc_answer(context, _now(self.engine.model_config, request.name, request.version))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        return await grpc_answer(context, _now(self.engine.model_statistics, request.name, request.version))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        index = self.engine.repository_index
        return await grpc_answer(context, _now(index, request.repository_name, request.ready))

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        parameters = dict(request.parameters)
        await grpc_answer(context, self.engine.load(request.repository_name, request.model_name, parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await grpc_answer(context, self.engine.unload(request.repository_name, request.model_name))
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        return await grpc_answer(context, self.engine.infer(request, context.time_remaining()))


async def _now(call: Any, *args: Any) -> Any:
    """A synchronous engine call as an awaitable, so its `CallError` maps like any other."""
    return call(*args)


class NotImplementedHandler(grpc.GenericRpcHandler):
    """Triton's RPCs of `inference.GRPCInferenceService` this server does not implement: UNIMPLEMENTED,
    saying so and naming what is. Registered after the servicer, so it sees only the unknown ones."""

    prefix = f"/{SERVICE.full_name}/"

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if not method.startswith(self.prefix):
            return None
        name = method.removeprefix(self.prefix)
        implemented = ", ".join(m.name for m in SERVICE.methods)
        message = (
            f"serve-kit does not implement {name[:80]!r} of {SERVICE.full_name}; it implements {implemented} "
            f"and the extensions {', '.join(EXTENSIONS)}"
        )

        async def refuse(requests: AsyncIterator[bytes], context: Context) -> None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

        return grpc.stream_stream_rpc_method_handler(refuse)
