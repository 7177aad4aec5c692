"""The model repository: new versions swap in under load, broken bundles are reported, pins hold."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from serving.server.error_status import status_for
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelLoadingError, ModelNotFoundError, ModelRepository
from serving.server.settings import ServerSettings
from tests.serving.payloads import images_input, looping_clients
from tests.serving.servers import copy_bundle, running_server


def test_a_new_version_swaps_in_while_clients_run_without_a_failed_request(
    bundle_path: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    settings = {"poll_interval_s": 0.2, "batching__max_queue_delay_us": 2000}
    with running_server(models, **settings) as server, looping_clients(server.address, jpegs[0]) as traffic:
        versions = traffic.versions
        while len(versions) < 40:
            time.sleep(0.05)
        copy_bundle(bundle_path, models, version=2)
        deadline = time.monotonic() + 60
        while versions[-1] != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = len(versions)
        while len(versions) < seen + 40:
            time.sleep(0.05)
    assert traffic.failures == []
    switched = versions.index("2")
    assert set(versions[:switched]) == {"1"} and versions[-16:] == ["2"] * 16
    assert '"message": "unloaded model", "model": "tags", "version": 1' in server.stderr
    # the log says which runtime and device were picked (device=auto on a CPU-only host)
    assert re.search(
        r'"message": "serving model".*"runtime": "onnxruntime [\d.]+ on cpu \(CPUExecutionProvider\)"',
        server.stderr,
    )


def test_a_broken_bundle_is_reported_while_the_others_serve(
    bundle_path: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    broken = copy_bundle(bundle_path, models, name="broken")
    with (broken / "model.onnx").open("r+b") as f:
        f.write(b"tampered")
    (models / "tags" / "²").mkdir()  # str.isdigit() says yes, int() says no: must be ignored
    (models / "empty").mkdir()
    with running_server(models) as server:
        client = triton.InferenceServerClient(server.address)
        assert (
            client.is_server_ready() and client.is_model_ready("tags") and not client.is_model_ready("broken")
        )
        with pytest.raises(InferenceServerException) as info:
            client.infer("broken", [images_input(jpegs[:1])])
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        assert (
            "model 'broken' failed to load" in info.value.message() and "model.onnx" in info.value.message()
        )
        assert client.infer("tags", [images_input(jpegs[:1])]).as_numpy("scores").shape == (1, 4)
        assert not client.is_model_ready("empty")
        with pytest.raises(InferenceServerException, match="no version folder"):
            client.infer("empty", [images_input(jpegs[:1])])
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service="broken")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert '"message": "model failed to load", "model": "broken"' in server.stderr


def test_a_pinned_version_is_served_instead_of_the_newest(
    bundle_path: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    copy_bundle(bundle_path, models, version=2)
    with running_server(models, models='{"tags": {"version": 1}}') as server:
        client = triton.InferenceServerClient(server.address)
        assert client.infer("tags", [images_input(jpegs[:1])]).get_response().model_version == "1"
        assert list(client.get_model_metadata("tags").versions) == ["1"]


def test_a_model_still_loading_is_unavailable_and_an_unknown_one_not_found(
    bundle_path: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            repository = ModelRepository(ServerSettings(models_dir=models), ServerMetrics(), pool)
            scan = asyncio.create_task(repository.scan())
            while "tags" not in repository.models:
                await asyncio.sleep(0)
            with pytest.raises(ModelLoadingError, match="model 'tags' is loading") as loading:
                repository.lease("tags").__enter__()
            assert status_for(loading.value)[0] == grpc.StatusCode.UNAVAILABLE
            await scan
            with repository.lease("tags") as served:
                assert served.version == 1
            with pytest.raises(ModelNotFoundError) as missing:
                repository.lease("nope").__enter__()
            assert status_for(missing.value)[0] == grpc.StatusCode.NOT_FOUND
            await repository.close()

    asyncio.run(scenario())
