"""The KServe V2 calls and Triton's extensions, once, for every front end (gRPC and HTTP/REST).

Each call takes and returns the V2 protobuf messages, and fails with a `CallError` that names a
gRPC status; the gRPC servicer aborts with it, the HTTP front end maps it to an HTTP status. So
both protocols share one engine: the same checks, answers, errors, metrics and statistics.

A request carries one input: `images`, a BYTES tensor of encoded images the server prepares with
the bundle's own pipeline, `texts` for a text model, or `pixels`, an FP32 tensor already prepared
(N, C, H, W). Its contents arrive raw (what tritonclient sends) or typed, never mixed. Numeric
outputs always go back raw.
"""

from __future__ import annotations

from typing import Any

import grpc

from serving import __version__
from serving.bundle.quoting import shown
from serving.server.error_status import CallError, RequestError, call_model, refusals, status_for
from serving.server.model_config import model_config, model_statistics, platform
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelRepository
from serving.server.served_model import ServedModel
from serving.server.statistics import stage
from serving.server.v2_outputs import check_sizes, encode_outputs, input_tensors, output_tensors, top_classes
from serving.server.v2_requests import queue_timeout, read_input, requested_outputs
from serving.wire import inference_pb2 as pb

__all__ = ["EXTENSIONS", "SERVER_NAME", "V2Engine"]

SERVER_NAME = "serve-kit"
# Triton's extensions served beside the core protocol, as ServerMetadata names them.
EXTENSIONS: list[str] = [
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "binary_tensor_data",
]


class V2Engine:
    def __init__(self, repository: ModelRepository, metrics: ServerMetrics) -> None:
        self.repository, self.metrics = repository, metrics

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready while not draining and, in poll mode, serving at least one model (a failed one does
        not stop the rest); in explicit mode, a server with nothing loaded yet is ready to load."""
        if self.repository.draining:
            return False
        if self.repository.wanted is not None:
            return True
        return any(self.repository.ready(name) for name in self.repository.models)

    def model_ready(self, name: str, version: str) -> bool:
        return self.repository.ready(name, version)

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def model_metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        model = self._look_up(name, version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=[str(model.version)],
            platform=platform(model),
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in input_tensors(model)],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in output_tensors(model)],
        )

    def model_config(self, name: str, version: str) -> pb.ModelConfigResponse:
        model = self._look_up(name, version)
        pinned = self.repository.settings.pinned_version(model.name) is not None
        return pb.ModelConfigResponse(config=model_config(model, pinned))

    def model_statistics(self, name: str, version: str) -> pb.ModelStatisticsResponse:
        """One model (and version), or every served one when `name` is empty."""
        if name:
            models = [self._look_up(name, version)]
        elif version:
            raise self._refuse(RequestError(f"version {shown(version)} given without a model name"), name)
        else:
            states = sorted(self.repository.models.items())
            models = [state.served for _, state in states if state.served is not None]
        return pb.ModelStatisticsResponse(model_stats=[model_statistics(m) for m in models])

    def repository_index(self, repository: str, ready_only: bool) -> pb.RepositoryIndexResponse:
        self._check_repository(repository)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                for e in self.repository.index(ready_only)
            ]
        )

    async def load(self, repository: str, name: str, parameters: dict[str, Any]) -> None:
        self._check_repository(repository)
        if parameters:
            names = ", ".join(sorted(map(shown, parameters)))
            refused = RequestError(
                f"load parameters {names} are not supported: serve-kit loads "
                "bundles from its repository as they are (no config override, no uploaded files)"
            )
            raise self._refuse(refused, name)
        try:
            await self.repository.load(name)
        except Exception as err:
            raise self._refuse(err, name) from None

    async def unload(self, repository: str, name: str) -> None:
        """Parameters (Triton's `unload_dependents`) mean nothing here: no model depends on another."""
        self._check_repository(repository)
        try:
            await self.repository.unload(name)
        except Exception as err:
            raise self._refuse(err, name) from None

    async def infer(self, request: Any, time_remaining: float | None) -> pb.ModelInferResponse:
        """`request` is a `ModelInferRequest`; `time_remaining` the caller's deadline, in seconds."""

        async def infer(model: ServedModel) -> pb.ModelInferResponse:
            wanted = requested_outputs(request, model)
            items, sizes = await read_input(request, model)
            check_sizes(model, sizes)
            outputs = await model.infer(items, queue_timeout(request, time_remaining))
            with stage("compute_output"):
                encoded = encode_outputs(model, outputs, sizes)
                response = pb.ModelInferResponse(
                    model_name=model.name, model_version=str(model.version), id=request.id
                )
                for name, classes in wanted:
                    tensor = encoded[name] if not classes else top_classes(model, outputs, classes)
                    response.outputs.add(name=name, datatype=tensor.spec.datatype, shape=tensor.spec.shape)
                    response.raw_output_contents.append(tensor.raw)
            return response

        name, version = request.model_name, request.model_version
        return await call_model(self.repository, self.metrics, name, version, infer)

    def _look_up(self, name: str, version: str) -> ServedModel:
        """The served model for a call that reads what it is (not an inference: not counted)."""
        try:
            with self.repository.lease(name, version) as served:
                return served
        except Exception as err:
            raise self._refuse(err, name) from None

    def _check_repository(self, name: str) -> None:
        """Triton may hold several repositories; serve-kit has one, named by its folder."""
        if name and name != self.repository.settings.models_dir.name:
            folder = self.repository.settings.models_dir.name
            unknown = RequestError(f"no repository {shown(name)}; the one repository is {folder!r}")
            raise self._refuse(unknown, "")

    @staticmethod
    def _refuse(err: BaseException, model: str) -> CallError:
        code, message = status_for(err)
        if code != grpc.StatusCode.INTERNAL:  # an internal error was logged with its traceback
            refusals.log(code, model, message)
        return CallError(code, message)
