"""The fifth served task, single-label image classification, spoken to by real clients: KServe V2
(unmodified tritonclient) answers `probabilities` and `label`, the typed Classify call one label per
image with every class's score, equal to the bundle's own answers. (TorchServe: test_torchserve.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from serving.bundle import load_bundle
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.serving.bundles import COLOURS
from tests.serving.payloads import images_input
from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="module")
def colours_server(
    classify_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("classify-repository")
    copy_bundle(classify_bundle, root, name="colours")
    feedback = tmp_path_factory.mktemp("classify-feedback")
    with running_server(
        root, batching__max_batch_size=8, batching__max_queue_delay_us=5000, feedback__dir=feedback
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(colours_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(colours_server.address)


@pytest.fixture(scope="module")
def tasks(colours_server: ServerProcess) -> Iterator[TasksStub]:
    with grpc.insecure_channel(colours_server.address) as channel:
        yield TasksStub(channel)


def expected(classify_bundle: Path, images: list[bytes]) -> tuple[np.ndarray, list[str]]:
    """The bundle's own answer: (N, classes) probabilities in label order, and each image's label."""
    answers = load_bundle(classify_bundle).predict(images)
    probabilities = np.array([[a["scores"][c] for c in COLOURS] for a in answers], np.float32)
    return probabilities, [a["label"] for a in answers]


def test_metadata_names_the_image_inputs_and_the_probabilities_and_label_outputs(
    client: triton.InferenceServerClient,
) -> None:
    meta = client.get_model_metadata("colours")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("images", "BYTES", [-1, 1]),
        ("pixels", "FP32", [-1, 3, 32, 32]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 3]),
        ("label", "BYTES", [-1]),
    ]


def test_v2_answers_equal_the_bundles_own(
    client: triton.InferenceServerClient, classify_bundle: Path, jpegs: list[bytes]
) -> None:
    result = client.infer("colours", [images_input(jpegs)])
    probabilities, labels = expected(classify_bundle, jpegs)
    got = result.as_numpy("probabilities")
    assert got.dtype == np.float32 and got.shape == (len(jpegs), len(COLOURS))
    np.testing.assert_allclose(got, probabilities, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    assert [b.decode() for b in result.as_numpy("label")] == labels
    assert labels == [COLOURS[i] for i in got.argmax(axis=1)]


def test_a_prepared_fp32_tensor_is_answered_as_the_bundle_predicts(
    client: triton.InferenceServerClient, classify_bundle: Path, jpegs: list[bytes]
) -> None:
    pixels = load_bundle(classify_bundle).prepare(jpegs)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = client.infer("colours", [tensor], outputs=[triton.InferRequestedOutput("label")])
    assert [b.decode() for b in result.as_numpy("label")] == expected(classify_bundle, jpegs)[1]
    assert result.as_numpy("probabilities") is None  # only what was asked for


def test_classify_answers_one_label_per_image_with_every_class_score(
    tasks: TasksStub, classify_bundle: Path, jpegs: list[bytes]
) -> None:
    response = tasks.Classify(pb.ClassifyRequest(model=pb.ModelRef(name="colours"), images=jpegs))
    assert response.model == pb.ModelRef(name="colours", version="1")
    answers = load_bundle(classify_bundle).predict(jpegs)
    assert len(response.results) == len(jpegs)
    for result, answer in zip(response.results, answers, strict=True):
        assert list(result.labels) == [answer["label"]]
        assert [s.label for s in result.scores] == list(COLOURS)
        for score in result.scores:
            assert score.score == pytest.approx(answer["scores"][score.label], abs=1e-5)
        assert sum(s.score for s in result.scores) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("call", ["Segment", "Pose", "Sentiment"])
def test_the_other_calls_are_told_to_call_classify(tasks: TasksStub, jpegs: list[bytes], call: str) -> None:
    ref = pb.ModelRef(name="colours")
    request = (
        pb.SentimentRequest(model=ref, texts=["red"])
        if call == "Sentiment"
        else getattr(pb, f"{call}Request")(model=ref, images=jpegs[:1])
    )
    with pytest.raises(grpc.RpcError) as info:
        getattr(tasks, call)(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "model 'colours' answers classify, not" in info.value.details()
    assert "call Classify" in info.value.details()


def test_feedback_for_a_classify_model_is_refused_by_task(tasks: TasksStub, jpegs: list[bytes]) -> None:
    request = pb.FeedbackRequest(model=pb.ModelRef(name="colours"), image=jpegs[0], labels=["red"])
    with pytest.raises(grpc.RpcError) as info:
        tasks.Feedback(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "model 'colours' answers classify; feedback is stored for" in info.value.details()
