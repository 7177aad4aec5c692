"""KServe V2 over HTTP/REST, spoken to by the unmodified tritonclient.http and by raw requests: the same
engine as gRPC behind it, so the same answers, errors, statistics and repository, in Triton's JSON."""

from __future__ import annotations

import gzip
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from serving.server.http_bodies import COMPRESS_FROM
from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="module")
def server(
    bundle_path: Path, sentiment_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Tags and reviews, loaded explicitly (so they can be unloaded), with a 1 MiB message limit."""
    root = tmp_path_factory.mktemp("http-models")
    copy_bundle(bundle_path, root)
    copy_bundle(sentiment_bundle, root, name="reviews")
    with running_server(
        root,
        model_control="explicit",
        load_models='["tags", "reviews"]',
        max_message_mb=1,
        batching__max_batch_size=8,
        batching__max_queue_delay_us=5000,
        drain_prestop_s=2,  # the last test drains it
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    assert server.http_address is not None
    with triton.InferenceServerClient(server.http_address) as http_client:
        yield http_client


def call(
    server: ServerProcess, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """A raw request: its status, headers and body, whatever the status."""
    request = urllib.request.Request(
        f"http://{server.http_address}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def error(server: ServerProcess, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    """(status, message) of a refused request, whose body must be Triton's {"error": message}."""
    status, answer_headers, content = call(server, method, path, body, **headers)
    assert answer_headers["Content-Type"].startswith("application/json")
    return status, json.loads(content)["error"]


def images_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def expected(bundle_path: Path, images: list[bytes]) -> tuple[np.ndarray, list[str]]:
    bundle = load_bundle(bundle_path)
    answers = bundle.predict(images)
    scores = np.array([[a["scores"][label] for label in bundle.manifest.labels] for a in answers], np.float32)
    return scores, [" ".join(a["labels"]) for a in answers]


def failure(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_the_server_is_live_ready_and_lists_its_extensions(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "serve-kit" and metadata["version"]
    assert set(metadata["extensions"]) >= {"classification", "model_repository", "binary_tensor_data"}
    assert client.is_model_ready("tags") and client.is_model_ready("tags", "1")
    assert not client.is_model_ready("tags", "2") and not client.is_model_ready("nope")


def test_model_metadata_and_config_are_tritons_json_with_numbers(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("tags", "1")
    assert metadata["name"] == "tags" and metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("images", "BYTES", [-1, 1]),
        ("pixels", "FP32", [-1, 3, 32, 32]),
    ]
    config = client.get_model_config("tags")
    assert config["name"] == "tags" and config["max_batch_size"] == 8
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("images", "TYPE_STRING", [1]),
        ("pixels", "TYPE_FP32", [3, 32, 32]),
    ]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [("scores", [4]), ("labels", [1])]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000


def test_jpeg_bytes_sent_as_binary_data_are_answered_as_the_bundle_predicts(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    result = client.infer("tags", [images_input(jpegs)], request_id="r-7")  # outputs come back binary
    scores, labels = expected(bundle_path, jpegs)
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    assert [b.decode() for b in result.as_numpy("labels")] == labels
    response = result.get_response()
    assert response["id"] == "r-7" and response["model_version"] == "1"
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])


def test_outputs_asked_for_as_json_come_back_as_json_data(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("scores", "labels")]
    result = client.infer("tags", [images_input(jpegs[:3])], outputs=outputs)
    scores, labels = expected(bundle_path, jpegs[:3])
    response = result.get_response()
    assert [o["shape"] for o in response["outputs"]] == [[3, 4], [3]]
    assert len(response["outputs"][0]["data"]) == 12  # flat, row-major
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    assert response["outputs"][1]["data"] == labels


def test_a_prepared_fp32_tensor_sent_as_json_is_answered_as_the_bundle_predicts(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    pixels = load_bundle(bundle_path).prepare(jpegs[:2])
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    result = client.infer(
        "tags", [tensor], outputs=[triton.InferRequestedOutput("scores", binary_data=False)]
    )
    np.testing.assert_allclose(result.as_numpy("scores"), expected(bundle_path, jpegs[:2])[0], atol=1e-5)
    assert result.as_numpy("labels") is None  # only what was asked for


def test_the_classification_extension_ranks_the_classes(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    ranked = triton.InferRequestedOutput("scores", binary_data=False, class_count=2)
    result = client.infer("tags", [images_input(jpegs[:2])], outputs=[ranked])
    scores = expected(bundle_path, jpegs[:2])[0]
    labels = load_bundle(bundle_path).manifest.labels
    for row, top in zip(scores, result.as_numpy("scores"), strict=True):
        entries = [str(entry).split(":") for entry in top]
        assert [int(index) for _, index, _ in entries] == list(np.argsort(-row, kind="stable")[:2])
        assert [label for _, _, label in entries] == [labels[int(index)] for _, index, _ in entries]
        np.testing.assert_allclose(
            [float(score) for score, _, _ in entries], np.sort(row)[::-1][:2], atol=1e-5
        )


def test_compressed_requests_and_answers_work(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    result = client.infer(
        "tags",
        [images_input(jpegs[:2])],
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    assert result.as_numpy("scores").shape == (2, 4)


def test_a_json_only_request_to_a_text_model(server: ServerProcess, sentiment_bundle: Path) -> None:
    body = {"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["great film"]}]}
    status, headers, content = call(server, "POST", "/v2/models/reviews/infer", json.dumps(body).encode())
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(content)
    (want,) = load_bundle(sentiment_bundle).predict(["great film"])
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": [want["label"]]}
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [1, 2] and probabilities["datatype"] == "FP32"
    np.testing.assert_allclose(
        probabilities["data"], [want["scores"]["neg"], want["scores"]["pos"]], atol=1e-5
    )


def test_statistics_count_every_inference(client: triton.InferenceServerClient, jpegs: list[bytes]) -> None:
    def stats() -> dict[str, Any]:
        (model,) = client.get_inference_statistics("tags", "1")["model_stats"]
        return model

    before = stats()
    for count in (1, 2, 3):
        client.infer("tags", [images_input(jpegs[:count])])
    after = stats()
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert after["inference_count"] - before["inference_count"] == 6
    assert isinstance(after["inference_stats"]["success"]["ns"], int) and after["last_inference"] > 0
    everything = client.get_inference_statistics()["model_stats"]
    assert {(m["name"], m["version"]) for m in everything} == {("tags", "1"), ("reviews", "1")}


def test_the_repository_index_and_explicit_load_and_unload(client: triton.InferenceServerClient) -> None:
    assert client.get_model_repository_index() == [
        {"name": "reviews", "version": "1", "state": "READY"},
        {"name": "tags", "version": "1", "state": "READY"},
    ]
    client.unload_model("reviews")
    assert not client.is_model_ready("reviews")
    (reviews,) = [m for m in client.get_model_repository_index() if m["name"] == "reviews"]
    assert reviews["state"] == "UNAVAILABLE" and "version" not in reviews
    client.load_model("reviews")
    assert client.is_model_ready("reviews")
    err = failure(lambda: client.load_model("reviews", config='{"max_batch_size": 2}'))
    assert err.status() == "400" and "load parameters" in err.message() and "'config'" in err.message()


def test_an_unknown_model_is_404_and_says_so(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    err = failure(lambda: client.infer("nope", [images_input(jpegs[:1])]))
    assert err.status() == "404" and "model 'nope' is not in the repository" in err.message()
    err = failure(lambda: client.get_model_metadata("tags", "9"))
    assert err.status() == "404" and "model 'tags' version '9' is not served" in err.message()


def test_a_wrong_datatype_is_400_and_named(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("pixels", [1, 3, 32, 32], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 3, 32, 32)))
    err = failure(lambda: client.infer("tags", [tensor]))
    assert err.status() == "400" and "input 'pixels' must be FP32, got 'FP64'" in err.message()


def binary_request(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return b"".join([text, *blobs]), str(len(text))


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b'{"inputs": [', {}, 400, "the request body is not valid JSON: Expecting value"),
        (b"[1, 2]", {}, 400, "the request body must be a JSON object, got [1, 2]"),
        (
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": "999"},
            400,
            "is 999 bytes, but the body has 14",
        ),
        (
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": "ten"},
            400,
            "must be a number of bytes, got 'ten'",
        ),
        (
            b'{"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP16", "data": [1.0]}]}',
            {},
            400,
            "input 'pixels': FP16 cannot be sent as JSON 'data'; send it as binary data",
        ),
        (
            b'{"inputs": [{"name": "pixels", "shape": [1, 2], "datatype": "FP32", "data": [[1.0], "x"]}]}',
            {},
            400,
            "FP32 'data' must be numbers",
        ),
        (
            b'{"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES"}]}',
            {},
            400,
            "input 'images' has neither 'data' nor a binary_data_size parameter",
        ),
    ],
    ids=[
        "truncated",
        "not-an-object",
        "header-past-body",
        "header-not-a-number",
        "fp16-json",
        "ragged",
        "no-data",
    ],
)
def test_malformed_bodies_are_400_and_say_what_was_wrong(
    server: ServerProcess, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    got_status, got_message = error(server, "POST", "/v2/models/tags/infer", body, **headers)
    assert (got_status, message in got_message) == (status, True), got_message


def test_binary_data_must_add_up_to_the_body(server: ServerProcess, jpegs: list[bytes]) -> None:
    element = struct.pack("<I", len(jpegs[0])) + jpegs[0]
    tensor = {
        "name": "images",
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(element)},
    }
    body, length = binary_request({"inputs": [tensor]}, element)
    status, _, content = call(
        server, "POST", "/v2/models/tags/infer", body, **{"Inference-Header-Content-Length": length}
    )
    assert status == 200 and json.loads(content)["outputs"][0]["name"] == "scores"  # JSON: none asked binary

    short = binary_request({"inputs": [tensor]}, element[:-5])
    status, message = error(
        server, "POST", "/v2/models/tags/infer", short[0], **{"Inference-Header-Content-Length": short[1]}
    )
    assert (
        status == 400 and f"binary_data_size is {len(element)} bytes, but only {len(element) - 5}" in message
    )
    extra = binary_request({"inputs": [tensor]}, element, b"tail")
    status, message = error(
        server, "POST", "/v2/models/tags/infer", extra[0], **{"Inference-Header-Content-Length": extra[1]}
    )
    assert status == 400 and "4 bytes of binary data follow" in message


def test_a_body_over_the_message_limit_is_413(server: ServerProcess) -> None:
    status, message = error(server, "POST", "/v2/models/tags/infer", b" " * ((1 << 20) + 1))
    assert status == 413 and "over the limit of 1,048,576 bytes (1 MiB, max_message_mb)" in message


def test_unknown_routes_and_wrong_methods_are_json_errors(server: ServerProcess) -> None:
    assert error(server, "GET", "/v2/nothing/here") == (
        404,
        "no route GET /v2/nothing/here; KServe V2 routes start with /v2/",
    )
    status, message = error(server, "GET", "/v2/models/tags/infer")
    assert status == 405 and message == "GET is not allowed on /v2/models/tags/infer; use POST"
    assert error(server, "GET", "/v2/models/tags/versions/3/ready") == (
        400,
        "model 'tags' version '3' is not ready",
    )
    status, message = error(server, "POST", "/v2/repository/elsewhere/index")
    assert status == 400 and message.startswith("no repository 'elsewhere'; the one repository is")


def test_tritons_routes_that_are_not_implemented_say_so(client: triton.InferenceServerClient) -> None:
    for call in (client.get_system_shared_memory_status, client.get_trace_settings, client.get_log_settings):
        with pytest.raises(InferenceServerException) as refused:
            call()
        assert "serve-kit does not implement /v2/" in refused.value.message()
        assert "model_configuration" in refused.value.message()


def test_an_answer_is_gzipped_where_asked_and_big_enough_to_pay(server: ServerProcess) -> None:
    def infer(texts: list[str]) -> tuple[dict[str, str], bytes]:
        inputs = [{"name": "texts", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
        body = json.dumps({"inputs": inputs}).encode()
        status, headers, content = call(
            server, "POST", "/v2/models/reviews/infer", body, **{"Accept-Encoding": "gzip"}
        )
        assert status == 200, content
        return headers, content

    headers, content = infer(["dull"])  # a few hundred bytes: one packet either way
    assert "Content-Encoding" not in headers and len(content) < COMPRESS_FROM
    assert json.loads(content)["model_name"] == "reviews"
    headers, content = infer(["dull", "a fine film"] * 40)
    assert headers["Content-Encoding"] == "gzip"
    answer = gzip.decompress(content)
    assert len(answer) >= COMPRESS_FROM and json.loads(answer)["outputs"][0]["shape"][0] == 80


# Last, as it stops the module's server: a drain costs no second server start.
def test_the_drain_turns_readiness_400_while_calls_are_still_answered(
    server: ServerProcess, client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    with ThreadPoolExecutor(1) as pool:
        stopped = pool.submit(server.stop)  # SIGTERM, then wait for the exit
        deadline = time.monotonic() + 10
        while call(server, "GET", "/v2/health/ready")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert call(server, "GET", "/v2/health/ready")[0] == 400  # for the pre-stop period
        assert call(server, "GET", "/v2/health/live")[0] == 200
        assert client.infer("tags", [images_input(jpegs[:1])]).as_numpy("scores").shape == (1, 4)
        client.close()  # its idle keep-alive connection would not hold the drain up, but is done
        assert stopped.result(timeout=60) == 0
