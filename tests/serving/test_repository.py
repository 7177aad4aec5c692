"""The model repository: new versions swap in under load, broken bundles are reported, pins hold, and a
version that would change what clients rely on (task, labels, input) is refused unless allowed."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from serving.bundle.networks import CnnSpec
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.server.decode_turns import DecodeTurns
from serving.server.error_status import status_for
from serving.server.logs import JsonFormatter, TextFormatter
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelLoadingError, ModelNotFoundError, ModelRepository
from serving.server.settings import ServerSettings
from tests.serving.bundles import TAGS, write_image_bundle
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
            repository = ModelRepository(
                ServerSettings(models_dir=models), ServerMetrics(), DecodeTurns(pool, 2)
            )
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


def test_a_version_of_another_task_is_refused_and_the_old_one_goes_on_serving(
    bundle_path: Path, classify_bundle: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    """A classifier exported as `tags` v2 on top of multi-label tags: its clients would read no labels."""
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    with running_server(models, log_format="text") as server:
        client = triton.InferenceServerClient(server.address)
        copy_bundle(classify_bundle, models, name="tags", version=2)
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("tags")  # what the next poll would do, without waiting for it
        message = refused.value.message()
        assert "version 2 refused" in message and "task 'multilabel' -> 'classify'" in message, message
        assert "version 1 goes on serving" in message
        result = client.infer("tags", [images_input(jpegs[:1])])
        assert result.get_response().model_version == "1" and result.as_numpy("labels") is not None
        assert client.is_model_ready("tags", "1") and not client.is_model_ready("tags", "2")
    assert re.search(
        r'WARNING refused an incompatible version model="tags" version=1 task="multilabel" '
        r"refused_version=2 changes=\"task 'multilabel' -> 'classify'; labels ",
        server.stderr,
    ), server.stderr[-3000:]


def test_an_incompatible_version_swaps_in_when_allowed_and_the_text_log_names_it(
    bundle_path: Path, classify_bundle: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    with running_server(models, log_format="text", allow_incompatible_swaps="true") as server:
        client = triton.InferenceServerClient(server.address)
        copy_bundle(classify_bundle, models, name="tags", version=2)
        client.load_model("tags")
        result = client.infer("tags", [images_input(jpegs[:1])])
        assert result.get_response().model_version == "2" and result.as_numpy("label") is not None
    # text lines carry what JSON lines carry: which model, which version, which task
    assert re.search(
        r'INFO serving model model="tags" version=2 task="classify" replaces_version=1 ', server.stderr
    ), server.stderr[-3000:]
    assert 'INFO unloaded model model="tags" version=1 task="multilabel"' in server.stderr


@pytest.mark.parametrize(
    ("labels", "size", "says"),
    [
        (("a", "b", "c", "d"), 32, "labels ['blue', 'green', 'red', 'square'] -> ['a', 'b', 'c', 'd']"),
        (TAGS, 48, "input 'images of 32x32' -> 'images of 48x48'"),
    ],
)
def test_a_version_with_other_labels_or_input_is_refused(
    bundle_path: Path, tag_images: Path, tmp_path: Path, labels: tuple[str, ...], size: int, says: str
) -> None:
    """The same task, yet a client of version 1 would read other labels, or send pixels of a size
    the new version refuses."""
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    images = sorted((tag_images / "train").glob("*.jpg"))[:8]
    post = MultiLabelPostprocess(labels, (0.5,) * len(labels))
    spec = CnnSpec("resnet18", len(labels))
    assert write_image_bundle(models, "tags", "multilabel", spec, post, images, size).name == "2"

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            settings = ServerSettings(models_dir=models, models={"tags": {"version": 1}})
            repository = ModelRepository(settings, ServerMetrics(), DecodeTurns(pool, 2))
            await repository.scan()
            settings.models.clear()  # the pin lifted: version 2 is the newest
            with pytest.raises(ModelLoadingError, match="version 2 refused") as refused:
                await repository.load("tags")
            assert says in str(refused.value)
            with repository.lease("tags") as served:
                assert served.version == 1
            assert [(e.name, e.version, e.state) for e in repository.index()] == [("tags", "1", "READY")]
            await repository.close()

    asyncio.run(scenario())


def test_the_swap_and_unload_log_lines_name_the_task_in_both_formats(
    bundle_path: Path, tmp_path: Path
) -> None:
    """`serving model` and `unloaded model` each say which model, which version and which task, in
    text lines as in JSON lines: an operator reading either can tell what went out with what came in."""
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() in ("serving model", "unloaded model"):
                records.append(record)

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            repository = ModelRepository(
                ServerSettings(models_dir=models), ServerMetrics(), DecodeTurns(pool, 2)
            )
            await repository.scan()
            copy_bundle(bundle_path, models, version=2)
            await repository.scan()  # version 2 swaps in; version 1 is retired
            await repository.close()

    logger, handler = logging.getLogger("serving.server"), Keep(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    text = [TextFormatter().format(record) for record in records]
    lines = [json.loads(JsonFormatter().format(record)) for record in records]
    said = [(line["message"], line["model"], line["version"], line.get("task")) for line in lines]
    assert said[:2] == [
        ("serving model", "tags", 1, "multilabel"),
        ("serving model", "tags", 2, "multilabel"),
    ]
    assert sorted(said[2:]) == [
        ("unloaded model", "tags", 1, "multilabel"),
        ("unloaded model", "tags", 2, "multilabel"),
    ]
    assert re.search(
        r' INFO serving model model="tags" version=2 task="multilabel" replaces_version=1 ', text[1]
    )
    assert sorted(line.split(" INFO ", 1)[1] for line in text if " INFO unloaded model " in line) == [
        'unloaded model model="tags" version=1 task="multilabel"',
        'unloaded model model="tags" version=2 task="multilabel"',
    ]
