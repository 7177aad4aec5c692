"""A text sentiment model served: UTF-8 texts over KServe V2 (unmodified tritonclient) and the typed
Sentiment call, equal to the bundle's own answers; bad texts refused with INVALID_ARGUMENT, by index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from serving.bundle.text_preprocess import MAX_TEXT_BYTES
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.serving.payloads import TEXTS
from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="module")
def text_server(sentiment_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("text-models")
    copy_bundle(sentiment_bundle, root, name="reviews")
    with running_server(root, batching__max_batch_size=8, batching__max_queue_delay_us=5000) as running:
        yield running


@pytest.fixture(scope="module")
def client(text_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(text_server.address)


@pytest.fixture(scope="module")
def tasks(text_server: ServerProcess) -> Iterator[TasksStub]:
    with grpc.insecure_channel(text_server.address) as channel:
        yield TasksStub(channel)


def texts_input(texts: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("texts", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    return tensor


def test_v2_metadata_names_the_texts_input_and_the_outputs(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("reviews")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("texts", "BYTES", [-1, 1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 2]),
        ("label", "BYTES", [-1]),
    ]


def test_v2_answers_equal_the_bundles_own(
    client: triton.InferenceServerClient, sentiment_bundle: Path
) -> None:
    expected = load_bundle(sentiment_bundle).predict(TEXTS)
    result = client.infer("reviews", [texts_input([t.encode() for t in TEXTS])])
    probabilities = result.as_numpy("probabilities")
    labels = [label.decode() for label in result.as_numpy("label")]
    assert labels == [e["label"] for e in expected]
    wanted = np.array([[e["scores"]["neg"], e["scores"]["pos"]] for e in expected])
    np.testing.assert_allclose(probabilities, wanted, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_texts_answer_does_not_depend_on_what_it_is_batched_with(
    client: triton.InferenceServerClient,
) -> None:
    alone = client.infer("reviews", [texts_input([TEXTS[1].encode()])]).as_numpy("probabilities")
    beside_long = client.infer("reviews", [texts_input([TEXTS[1].encode(), TEXTS[2].encode()])])
    np.testing.assert_allclose(beside_long.as_numpy("probabilities")[0], alone[0], atol=1e-5)


def test_the_typed_call_answers_as_the_bundle_does(tasks: TasksStub, sentiment_bundle: Path) -> None:
    expected = load_bundle(sentiment_bundle).predict(TEXTS)
    reply = tasks.Sentiment(pb.SentimentRequest(model=pb.ModelRef(name="reviews"), texts=TEXTS))
    assert reply.model.name == "reviews" and reply.model.version == "1"
    assert [r.label for r in reply.results] == [e["label"] for e in expected]
    for result, want in zip(reply.results, expected, strict=True):
        assert result.probability == pytest.approx(want["scores"][result.label], abs=1e-5)
        assert [s.label for s in result.probabilities] == ["neg", "pos"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"   ", "item 1: text is empty"),
        (b"\xff\xfe not utf-8", "item 1: text is not valid UTF-8"),
        (b"x" * (MAX_TEXT_BYTES + 1), f"over the limit of {MAX_TEXT_BYTES:,}"),
    ],
)
def test_a_bad_text_is_invalid_argument_naming_it(
    client: triton.InferenceServerClient, text: bytes, reason: str
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("reviews", [texts_input([b"fine film", text])])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert reason in caught.value.message()


def test_a_typed_text_over_the_limit_is_refused_before_tokenizing_naming_it(tasks: TasksStub) -> None:
    request = pb.SentimentRequest(model=pb.ModelRef(name="reviews"), texts=["fine", "é" * MAX_TEXT_BYTES])
    with pytest.raises(grpc.RpcError) as caught:
        tasks.Sentiment(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"item 1: text of {MAX_TEXT_BYTES:,} characters, over the limit" in (caught.value.details() or "")
    assert tasks.Sentiment(pb.SentimentRequest(model=pb.ModelRef(name="reviews"), texts=["fine"])).results


def test_the_typed_call_refuses_no_texts_and_image_calls_are_told_which_call(tasks: TasksStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        tasks.Sentiment(pb.SentimentRequest(model=pb.ModelRef(name="reviews")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no texts" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        tasks.Classify(pb.ClassifyRequest(model=pb.ModelRef(name="reviews"), images=[b"x"]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "call Sentiment" in caught.value.details()


def test_images_sent_to_a_text_model_are_refused_by_name(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("images", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"x"], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("reviews", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown input 'images'" in caught.value.message() and "'texts'" in caught.value.message()
