"""The KServe V2 service, spoken to by the unmodified tritonclient, answers as the bundle does."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb  # the standard client's own V2 stubs
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from serving.server.tensors import pack_bytes
from tests.serving.payloads import declared_png, images_input
from tests.serving.servers import ServerProcess


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def expected(bundle_path: Path, images: list[bytes]) -> tuple[np.ndarray, list[str]]:
    answers = load_bundle(bundle_path).predict(images)
    labels = load_bundle(bundle_path).manifest.labels
    scores = np.array([[a["scores"][label] for label in labels] for a in answers], np.float32)
    return scores, [" ".join(a["labels"]) for a in answers]


def test_the_server_is_live_ready_and_describes_itself(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tags")
    assert client.is_model_ready("tags", "1")
    assert not client.is_model_ready("tags", "2")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata().name == "serve-kit"


def test_model_metadata_lists_the_inputs_and_outputs(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("tags")
    assert meta.name == "tags" and list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("images", "BYTES", [-1, 1]),
        ("pixels", "FP32", [-1, 3, 32, 32]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("scores", "FP32", [-1, 4]),
        ("labels", "BYTES", [-1]),
    ]


def test_jpeg_bytes_are_answered_as_the_bundle_predicts(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    result = client.infer("tags", [images_input(jpegs)], request_id="r-7")
    scores, labels = expected(bundle_path, jpegs)
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    assert [b.decode() for b in result.as_numpy("labels")] == labels
    response = result.get_response()
    assert response.id == "r-7" and response.model_version == "1"


def test_a_prepared_fp32_tensor_is_answered_as_the_bundle_predicts(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    pixels = load_bundle(bundle_path).prepare(jpegs)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = client.infer("tags", [tensor], outputs=[triton.InferRequestedOutput("scores")])
    np.testing.assert_allclose(result.as_numpy("scores"), expected(bundle_path, jpegs)[0], atol=1e-5)
    assert result.as_numpy("labels") is None  # only what was asked for


def test_parameters_a_client_may_send_are_accepted(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    result = client.infer(
        "tags",
        [images_input(jpegs[:1])],
        outputs=[triton.InferRequestedOutput("scores")],
        priority=1,
        timeout=5_000_000,
        parameters={"custom": "ignored"},
    )
    assert result.as_numpy("scores").shape == (1, 4)


def failure(call: object) -> InferenceServerException:
    assert callable(call)
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("model", "version", "status", "message"),
    [
        ("nope", "", "StatusCode.NOT_FOUND", "model 'nope' is not in the repository (models: tags)"),
        ("tags", "9", "StatusCode.NOT_FOUND", "model 'tags' version '9' is not served (serving 1)"),
    ],
)
def test_an_unknown_model_or_version_is_not_found(
    client: triton.InferenceServerClient,
    jpegs: list[bytes],
    model: str,
    version: str,
    status: str,
    message: str,
) -> None:
    err = failure(lambda: client.infer(model, [images_input(jpegs[:1])], model_version=version))
    assert err.status() == status and message in err.message()
    err = failure(lambda: client.get_model_metadata(model, version))
    assert err.status() == status


def test_an_undecodable_image_is_named(client: triton.InferenceServerClient, jpegs: list[bytes]) -> None:
    err = failure(lambda: client.infer("tags", [images_input([jpegs[0], b"not an image"])]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert err.message().startswith("item 1: not a decodable image")


def test_a_decompression_bomb_is_refused_before_decoding(client: triton.InferenceServerClient) -> None:
    err = failure(lambda: client.infer("tags", [images_input([declared_png(8_000, 6_000)])]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert "over the limit of 40,000,000" in err.message()


@pytest.mark.parametrize(
    ("name", "shape", "datatype", "data", "message"),
    [
        (
            "pixels",
            [1, 3, 32, 32],
            "FP64",
            np.zeros((1, 3, 32, 32)),
            "input 'pixels' must be FP32, got 'FP64'",
        ),
        (
            "pixels",
            [1, 3, 16, 16],
            "FP32",
            np.zeros((1, 3, 16, 16), np.float32),
            "must have shape [-1, 3, 32, 32]",
        ),
        ("images", [0], "BYTES", np.array([], dtype=object), "input 'images' is empty"),
        (
            "images",
            [2, 2],
            "BYTES",
            np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
            "shape [N] or [N, 1]",
        ),
        ("image", [1], "BYTES", np.array([b"a"], dtype=object), "unknown input 'image'"),
    ],
)
def test_a_malformed_input_is_invalid_and_says_what_was_wrong(
    client: triton.InferenceServerClient,
    name: str,
    shape: list[int],
    datatype: str,
    data: np.ndarray,
    message: str,
) -> None:
    tensor = triton.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(data)
    err = failure(lambda: client.infer("tags", [tensor]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert message in err.message()


def test_an_unknown_output_is_invalid(client: triton.InferenceServerClient, jpegs: list[bytes]) -> None:
    err = failure(
        lambda: client.infer("tags", [images_input(jpegs[:1])], outputs=[triton.InferRequestedOutput("x")])
    )
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "unknown output 'x'" in err.message()


def raw_stub(server: ServerProcess) -> tuple[grpc.Channel, GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 256 << 20)])
    return channel, GRPCInferenceServiceStub(channel)


def test_typed_contents_work_and_mixing_them_with_raw_is_invalid(
    server: ServerProcess, jpegs: list[bytes]
) -> None:
    channel, stub = raw_stub(server)
    with channel:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="images",
            datatype="BYTES",
            shape=[2],
            contents=pb.InferTensorContents(bytes_contents=jpegs[:2]),
        )
        response = stub.ModelInfer(pb.ModelInferRequest(model_name="tags", inputs=[tensor]))
        assert [o.name for o in response.outputs] == ["scores", "labels"]
        assert np.frombuffer(response.raw_output_contents[0], "<f4").shape == (8,)

        mixed = pb.ModelInferRequest(
            model_name="tags", inputs=[tensor], raw_input_contents=[pack_bytes(jpegs[:2])]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(mixed)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "typed contents and the request has raw contents" in (info.value.details() or "")


def test_a_bytes_tensor_cut_short_is_invalid(server: ServerProcess) -> None:
    channel, stub = raw_stub(server)
    with channel:
        tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype="BYTES", shape=[1])
        request = pb.ModelInferRequest(
            model_name="tags", inputs=[tensor], raw_input_contents=[b"\xff\x00\x00\x00ab"]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "BYTES element 0 declares 255 bytes, only 2 remain" in (info.value.details() or "")


def test_a_message_over_the_limit_is_resource_exhausted(server: ServerProcess) -> None:
    channel, stub = raw_stub(server)
    with channel:
        tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype="BYTES", shape=[1])
        huge = pack_bytes([b"\0" * (100 << 20)])
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(
                pb.ModelInferRequest(model_name="tags", inputs=[tensor], raw_input_contents=[huge])
            )
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_requests_are_counted_by_model_and_status(
    server: ServerProcess, client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    from tests.serving.servers import metric_value

    before = server.metrics()
    client.infer("tags", [images_input(jpegs[:2])])
    failure(lambda: client.infer("tags", [images_input([b"junk"])]))
    after = server.metrics()
    labels = {"model": "tags", "version": "1"}
    for name, extra, grew_by in [
        ("nv_inference_request_success", {}, 1),
        ("nv_inference_request_failure", {"reason": "INVALID_ARGUMENT"}, 1),
        ("nv_inference_count", {}, 2),
    ]:
        assert (
            metric_value(after, name, **labels, **extra) - metric_value(before, name, **labels, **extra)
            == grew_by
        )
    assert "nv_inference_request_duration_seconds_bucket" in after
    assert "nv_inference_pending_request_count" in after


def hostile_requests() -> list[tuple[str, pb.ModelInferRequest, str, str]]:
    tensor = pb.ModelInferRequest.InferInputTensor
    many = tensor(name="images", datatype="BYTES", shape=[2000])
    deep = tensor(name="pixels", datatype="FP32", shape=[1] * 70 + [3 * 32 * 32])
    one = tensor(name="images", datatype="BYTES", shape=[1])
    requested = pb.ModelInferRequest.InferRequestedOutputTensor
    return [
        (
            "more items than the queue can ever hold",
            pb.ModelInferRequest(
                model_name="tags", inputs=[many], raw_input_contents=[pack_bytes([b""] * 2000)]
            ),
            "INVALID_ARGUMENT",
            "2000 items in one request; at most 1024 (max_queue_size) fit",
        ),
        (
            "a shape of 71 dimensions",
            pb.ModelInferRequest(model_name="tags", inputs=[deep], raw_input_contents=[b"\0" * 4 * 3072]),
            "INVALID_ARGUMENT",
            "input 'pixels' must have shape [-1, 3, 32, 32]",
        ),
        (
            "the same output asked for twice",
            pb.ModelInferRequest(
                model_name="tags",
                inputs=[one],
                outputs=[requested(name="scores")] * 3,
                raw_input_contents=[pack_bytes([b"x"])],
            ),
            "INVALID_ARGUMENT",
            "an output is requested twice",
        ),
        (
            "a 20,000-character model name",
            pb.ModelInferRequest(
                model_name="m" * 20_000, inputs=[one], raw_input_contents=[pack_bytes([b"x"])]
            ),
            "NOT_FOUND",
            "model 'mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm...",
        ),
    ]


@pytest.mark.parametrize(
    ("what", "request_", "code", "message"), hostile_requests(), ids=lambda v: str(v)[:30]
)
def test_hostile_requests_are_refused_cheaply_and_precisely(
    server: ServerProcess, what: str, request_: pb.ModelInferRequest, code: str, message: str
) -> None:
    channel, stub = raw_stub(server)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request_, timeout=30)
    assert info.value.code().name == code, what
    details = info.value.details() or ""
    assert message in details and len(details) <= 1000


def test_an_image_with_an_absurd_side_is_refused_from_its_header(
    client: triton.InferenceServerClient,
) -> None:
    err = failure(lambda: client.infer("tags", [images_input([declared_png(1, 2_000_000)])]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert "a side over the limit of 16,384" in err.message()


def encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "size", "fmt"),
    [
        ("L", (40, 30), "PNG"),
        ("CMYK", (40, 30), "JPEG"),
        ("RGBA", (40, 30), "PNG"),
        ("I;16", (40, 30), "PNG"),
        ("P", (40, 30), "GIF"),
        ("RGB", (1, 1), "PNG"),
        ("RGB", (16_000, 2), "PNG"),
        ("RGB", (32, 32), "WEBP"),
    ],
)
def test_unusual_modes_and_shapes_are_converted_and_answered(
    client: triton.InferenceServerClient, mode: str, size: tuple[int, int], fmt: str
) -> None:
    result = client.infer("tags", [images_input([encoded(mode, size, fmt)])])
    scores = result.as_numpy("scores")
    assert scores.shape == (1, 4) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (encoded("RGB", (64, 64), "JPEG")[:2000], "item 0: image data is truncated or corrupt"),
        (encoded("RGB", (64, 64), "PNG")[:60], "item 0: "),
        (declared_png(60_000, 60_000), "item 0: not a decodable image"),
    ],
)
def test_truncated_images_and_giant_declarations_are_invalid(
    client: triton.InferenceServerClient, payload: bytes, message: str
) -> None:
    err = failure(lambda: client.infer("tags", [images_input([payload])]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and message in err.message()


def test_parameters_of_unexpected_types_are_ignored(server: ServerProcess, jpegs: list[bytes]) -> None:
    channel, stub = raw_stub(server)
    with channel:
        tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype="BYTES", shape=[1])
        request = pb.ModelInferRequest(
            model_name="tags", inputs=[tensor], raw_input_contents=[pack_bytes(jpegs[:1])]
        )
        request.parameters["timeout"].string_param = "soon"
        request.parameters["priority"].double_param = -1.5
        request.parameters["binary_data_output"].bool_param = True
        assert stub.ModelInfer(request, timeout=30).model_version == "1"


@pytest.mark.parametrize(
    "method", ["/inference.GRPCInferenceService/ModelInfer", "/grpc.health.v1.Health/Check"]
)
def test_bytes_that_are_not_a_request_at_all_are_invalid(server: ServerProcess, method: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(method)
        for garbage in [b"\x0a\x02\xff\xfe", b"\x0a\xff\xff\xff", b"\xff" * 64]:
            with pytest.raises(grpc.RpcError) as info:
                call(garbage, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"{method}: the request is not a valid message" in (info.value.details() or "")
