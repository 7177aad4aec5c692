"""Triton's extensions, called by tritonclient as Triton users call them: the model configuration,
statistics, the model repository (index, load, unload), classification (`class_count` k answers the
top k classes as "score:index:label"), and a clear UNIMPLEMENTED for the RPCs serve-kit lacks. Metrics
carry Triton's exact names; a model name a client sends never reaches the file system unchecked, and
no answer shows where the repository lies."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from tests.serving.payloads import images_input
from tests.serving.servers import ServerProcess, copy_bundle, metric_value, running_server


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def test_the_server_lists_exactly_the_extensions_it_implements(client: triton.InferenceServerClient) -> None:
    assert set(client.get_server_metadata().extensions) == {
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
        "binary_tensor_data",
    }


def test_the_model_configuration_describes_what_the_server_does(
    client: triton.InferenceServerClient, bundle_path: Path
) -> None:
    config = client.get_model_config("tags", as_json=True)["config"]
    labels = load_bundle(bundle_path).manifest.labels
    assert config["name"] == "tags" and config["backend"] == "serve-kit"
    assert config["platform"] == client.get_model_metadata("tags").platform
    assert config["max_batch_size"] == 8  # the server fixture's batching
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "5000"
    inputs = {i["name"]: i for i in config["input"]}
    assert inputs["images"]["data_type"] == "TYPE_STRING" and inputs["images"]["dims"] == ["1"]
    assert inputs["pixels"]["data_type"] == "TYPE_FP32" and inputs["pixels"]["format"] == "FORMAT_NCHW"
    assert len(inputs["pixels"]["dims"]) == 3  # C, H, W: the batch axis is max_batch_size's
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["scores"]["dims"] == [str(len(labels))] and outputs["scores"]["data_type"] == "TYPE_FP32"
    assert config["instance_group"][0]["count"] == 1 and config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["task"]["string_value"] == "multilabel"


def test_metadata_shapes_are_the_batch_axis_then_the_configs_dims(
    client: triton.InferenceServerClient,
) -> None:
    """perf_analyzer sizes its inputs from the metadata past the batch axis: an `images` of [-1] there
    beside dims [1] in the configuration left it nothing to send ("unable to set shape")."""
    config = client.get_model_config("tags", as_json=True)["config"]
    dims = {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]}
    shapes = {t.name: list(t.shape) for t in client.get_model_metadata("tags").inputs}
    assert shapes == {name: [-1, *d] for name, d in dims.items()}


def test_statistics_count_requests_items_and_batches_as_metrics_does(
    server: ServerProcess, client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    def stats() -> dict[str, Any]:
        (model,) = client.get_inference_statistics("tags", as_json=True)["model_stats"]
        return model

    before = stats()
    for count in (1, 3):
        client.infer("tags", [images_input(jpegs[:count])])
    client.get_model_metadata("tags")  # reading what a model is, is not an inference
    client.get_model_config("tags")
    after = stats()

    def grew(*path: str) -> int:
        def value(model: dict[str, Any]) -> int:
            found: Any = model
            for key in path:
                found = found.get(key, {})
            return int(found or 0)

        return value(after) - value(before)

    assert after["name"] == "tags" and after["version"] == "1"
    assert grew("inference_count") == 4
    assert grew("inference_stats", "success", "count") == 2
    assert 1 <= grew("execution_count") <= 4
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert grew("inference_stats", part, "count") == 2, part
        assert grew("inference_stats", part, "ns") > 0, part
    assert grew("inference_stats", "success", "ns") >= grew("inference_stats", "compute_infer", "ns")
    assert int(after["last_inference"]) > 0
    metrics, labels = server.metrics(), {"model": "tags", "version": "1"}
    assert metric_value(metrics, "nv_inference_request_success", **labels) == int(
        after["inference_stats"]["success"]["count"]
    )
    assert metric_value(metrics, "nv_inference_count", **labels) == int(after["inference_count"])
    assert metric_value(metrics, "nv_inference_exec_count", **labels) == int(after["execution_count"])
    for part in ("request", "queue", "compute_input", "compute_infer", "compute_output"):  # Triton's µs
        got = metric_value(metrics, f"nv_inference_{part}_duration_us", **labels)
        stat = "success" if part == "request" else part
        assert got == pytest.approx(int(after["inference_stats"][stat]["ns"]) / 1e3, rel=1e-6, abs=1), part
    batches = sum(int(b["compute_infer"]["count"]) for b in after["batch_stats"])
    assert batches == int(after["execution_count"])


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_metrics_carry_tritons_exact_names_without_total_or_created_series(
    server: ServerProcess, client: triton.InferenceServerClient, jpegs: list[bytes], accept: str
) -> None:
    """A Triton dashboard queries `nv_inference_request_success`; prometheus-client's own naming
    (`_total`, `_created`) found nothing. Prometheus asks for OpenMetrics first: both formats hold."""
    client.infer("tags", [images_input(jpegs[:1])])
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.metrics_port}/metrics", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    names = set(re.findall(r"^(nv_inference_\w+)\{", text, re.MULTILINE))
    assert {
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_pending_request_count",
    } <= names, sorted(names)
    assert re.search(r'^nv_inference_request_success\{model="tags",version="1"\} [1-9]', text, re.MULTILINE)
    assert "_total" not in text and "_created" not in text


def test_statistics_of_every_model_and_of_an_unknown_one(client: triton.InferenceServerClient) -> None:
    assert [m["name"] for m in client.get_inference_statistics(as_json=True)["model_stats"]] == ["tags"]
    with pytest.raises(InferenceServerException) as refused:
        client.get_inference_statistics("nope")
    assert refused.value.status() == "StatusCode.NOT_FOUND"
    assert "model 'nope' is not in the repository" in refused.value.message()


def test_the_repository_index_lists_each_model_and_its_state(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [{"name": "tags", "version": "1", "state": "READY"}]


def test_unloading_in_poll_mode_is_refused_with_the_reason(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.unload_model("tags")
    assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert "model_control=explicit" in refused.value.message()
    assert client.is_model_ready("tags")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_system_shared_memory_status(),
        lambda c: c.get_cuda_shared_memory_status(),
        lambda c: c.get_trace_settings(),
        lambda c: c.get_log_settings(),
    ],
    ids=["system_shared_memory", "cuda_shared_memory", "trace", "logging"],
)
def test_what_is_not_implemented_says_so(
    client: triton.InferenceServerClient, call: Callable[[triton.InferenceServerClient], object]
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        call(client)
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "serve-kit does not implement" in refused.value.message()
    assert "ModelConfig" in refused.value.message()  # and names what it does implement


def test_streaming_inference_is_refused_as_unimplemented(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    errors: list[InferenceServerException] = []
    answered = threading.Event()

    def callback(result: object, error: InferenceServerException) -> None:
        errors.append(error)
        answered.set()

    client.start_stream(callback)
    try:
        with contextlib.suppress(InferenceServerException):  # the refusal may beat the request out
            client.async_stream_infer("tags", [images_input(jpegs[:1])])
        assert answered.wait(30)
    finally:
        client.stop_stream()
    assert "serve-kit does not implement 'ModelStreamInfer'" in str(errors[0])


def test_class_count_answers_the_top_classes_of_the_scores(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    bundle = load_bundle(bundle_path)
    labels = bundle.manifest.labels
    answers = bundle.predict(jpegs[:3])
    result = client.infer(
        "tags", [images_input(jpegs[:3])], outputs=[triton.InferRequestedOutput("scores", class_count=2)]
    )
    top = result.as_numpy("scores")
    assert top.shape == (3, 2)
    for row, answer in zip(top, answers, strict=True):
        fields = [element.decode().split(":") for element in row]
        scores = [float(score) for score, _, _ in fields]
        assert scores == sorted(scores, reverse=True)
        expected = sorted(labels, key=lambda label: -answer["scores"][label])[:2]
        assert [label for _, _, label in fields] == expected
        assert [int(index) for _, index, _ in fields] == [labels.index(label) for label in expected]
        assert np.allclose(scores, [answer["scores"][label] for label in expected], atol=1e-5)


def test_class_count_is_capped_at_the_number_of_classes(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    result = client.infer(
        "tags", [images_input(jpegs[:1])], outputs=[triton.InferRequestedOutput("scores", class_count=99)]
    )
    assert result.as_numpy("scores").shape == (1, len(load_bundle(bundle_path).manifest.labels))


def test_class_count_on_an_output_without_classes_is_refused(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.infer(
            "tags", [images_input(jpegs[:1])], outputs=[triton.InferRequestedOutput("labels", class_count=2)]
        )
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "classification ranks the 'scores' output, not 'labels'" in refused.value.message()


# -- model_control=explicit: only the models loaded on request serve --------------------------------
@pytest.fixture(scope="module")
def explicit(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("explicit")
    copy_bundle(bundle_path, models, "tags")
    copy_bundle(bundle_path, models, "spare")
    (models / "broken" / "1").mkdir(parents=True)
    with running_server(models, model_control="explicit", load_models='["tags"]') as running:
        yield running


def test_explicit_mode_serves_only_the_loaded_models_and_loads_on_request(
    explicit: ServerProcess, jpegs: list[bytes]
) -> None:
    client = triton.InferenceServerClient(explicit.address)
    assert client.is_server_ready()
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["tags"]["state"] == "READY"
    assert index["spare"] == {"name": "spare", "state": "UNAVAILABLE", "reason": "not loaded"}
    with pytest.raises(InferenceServerException) as refused:
        client.infer("spare", [images_input(jpegs[:1])])
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert "not loaded (model_control=explicit)" in refused.value.message()

    client.load_model("spare")
    assert client.is_model_ready("spare")
    assert client.infer("spare", [images_input(jpegs[:1])]).as_numpy("scores").shape[0] == 1
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert [index[name]["state"] for name in ("spare", "tags")] == ["READY", "READY"]

    client.unload_model("spare")
    assert not client.is_model_ready("spare")
    with pytest.raises(InferenceServerException) as refused:
        client.infer("spare", [images_input(jpegs[:1])])
    assert "was unloaded" in refused.value.message()
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["spare"]["state"] == "UNAVAILABLE"
    assert client.infer("tags", [images_input(jpegs[:1])]).as_numpy("scores").shape[0] == 1


def test_explicit_loads_that_cannot_succeed_say_why(explicit: ServerProcess) -> None:
    client = triton.InferenceServerClient(explicit.address)
    for name, code, says in [
        ("broken", "UNAVAILABLE", "failed to load"),
        ("nowhere", "NOT_FOUND", "no model folder 'nowhere'"),
        ("../tags", "INVALID_ARGUMENT", "is not a model folder's name"),
    ]:
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(name)
        assert refused.value.status() == f"StatusCode.{code}", name
        assert says in refused.value.message(), refused.value.message()
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("tags", config='{"max_batch_size": 4}')
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not supported" in refused.value.message()
    assert client.is_model_ready("tags")


def http_load(server: ServerProcess, name: str) -> tuple[int, str]:
    """POST /v2/repository/models/<name>/load: the status and the body's error message."""
    request = urllib.request.Request(f"http://{server.http_address}/v2/repository/models/{name}/load", b"{}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as err:
        return err.code, str(json.loads(err.read())["error"])


def test_no_load_error_shows_where_the_repository_lies(
    explicit: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hidden = str(tmp_path_factory.getbasetemp())  # every test folder, the repository's too, is below it
    client = triton.InferenceServerClient(explicit.address)
    for name in ("..", "../tags", "nowhere", "broken"):
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(name)
        assert hidden not in refused.value.message(), refused.value.message()
        status, message = http_load(explicit, name)
        assert status in (400, 404, 503) and message and hidden not in message, (name, message)
    status, message = http_load(explicit, "..")
    assert status == 400 and "'..' is not a model folder's name" in message


def test_an_over_long_model_name_is_refused_as_invalid_and_logs_no_traceback(
    bundle_path: Path, tmp_path: Path
) -> None:
    """300 characters used to reach the file system: OSError "File name too long", a 500 and a traceback."""
    copy_bundle(bundle_path, tmp_path, "tags")
    long_name = "x" * 300
    with running_server(tmp_path, model_control="explicit", load_models='["tags"]') as server:
        status, message = http_load(server, long_name)
        assert (
            status == 400 and "is 300 bytes long (UTF-8); a model folder's name holds at most 255" in message
        )
        client = triton.InferenceServerClient(server.address)
        for name in (long_name, "tags/../tags", "\x01tags"):
            with pytest.raises(InferenceServerException) as refused:
                client.load_model(name)
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", name
        with pytest.raises(InferenceServerException) as unknown:  # inference: an unknown model, as before
            client.infer(long_name, [images_input([b"x"])])
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        assert client.is_model_ready("tags")
    assert "Traceback" not in server.stderr and "OSError" not in server.stderr, server.stderr[-3000:]
    assert '"code": "INVALID_ARGUMENT"' in server.stderr  # each refusal logged as one plain line
