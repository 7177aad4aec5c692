"""The typed task API, health checking and reflection, spoken to by plain grpcio clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from serving.bundle import load_bundle
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.serving.servers import ServerProcess


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def rpc_error(call: object) -> grpc.RpcError:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_classify_answers_each_image_as_the_bundle_does(
    channel: grpc.Channel, bundle_path: Path, jpegs: list[bytes]
) -> None:
    response = TasksStub(channel).Classify(pb.ClassifyRequest(model=pb.ModelRef(name="tags"), images=jpegs))
    expected = load_bundle(bundle_path).predict(jpegs)
    assert response.model == pb.ModelRef(name="tags", version="1")
    assert len(response.results) == len(jpegs)
    for result, answer in zip(response.results, expected, strict=True):
        assert list(result.labels) == answer["labels"]
        assert [s.label for s in result.scores] == ["blue", "green", "red", "square"]
        for score in result.scores:
            assert score.score == pytest.approx(answer["scores"][score.label], abs=1e-5)


def test_a_task_the_model_does_not_answer_is_a_failed_precondition(
    channel: grpc.Channel, jpegs: list[bytes]
) -> None:
    stub = TasksStub(channel)
    for call in [
        lambda: stub.Segment(pb.SegmentRequest(model=pb.ModelRef(name="tags"), images=jpegs[:1])),
        lambda: stub.Pose(pb.PoseRequest(model=pb.ModelRef(name="tags"), images=jpegs[:1])),
        lambda: stub.Sentiment(pb.SentimentRequest(model=pb.ModelRef(name="tags"), texts=["great"])),
    ]:
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "model 'tags' answers multilabel, not" in err.details() and "call Classify" in err.details()


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (pb.ClassifyRequest(model=pb.ModelRef(name="tags")), "INVALID_ARGUMENT", "no images"),
        (pb.ClassifyRequest(model=pb.ModelRef(name="x"), images=[b"a"]), "NOT_FOUND", "model 'x' is not in"),
        (
            pb.ClassifyRequest(model=pb.ModelRef(name="tags"), images=[b"a"]),
            "INVALID_ARGUMENT",
            "item 0: not a",
        ),
    ],
)
def test_bad_classify_requests_are_refused_precisely(
    channel: grpc.Channel, request_: pb.ClassifyRequest, code: str, message: str
) -> None:
    err = rpc_error(lambda: TasksStub(channel).Classify(request_))
    assert err.code().name == code and message in err.details()


def test_feedback_without_a_store_is_a_failed_precondition(channel: grpc.Channel) -> None:
    err = rpc_error(lambda: TasksStub(channel).Feedback(pb.FeedbackRequest(model=pb.ModelRef(name="tags"))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "SERVE_FEEDBACK__DIR" in err.details()


def test_health_is_reported_overall_and_per_model(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(service="tags")).status == serving
    err = rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"inference.GRPCInferenceService", "servekit.v1.Tasks", "grpc.health.v1.Health"} <= names


def test_text_that_is_not_utf8_is_refused_without_harm(channel: grpc.Channel, jpegs: list[bytes]) -> None:
    # SentimentRequest{model: {name: "tags"}, texts: [b"\xff\xfe"]}, written by hand: no client would send it.
    model = b"\x0a\x06\x0a\x04tags"
    broken = model + b"\x12\x02\xff\xfe"
    call = channel.unary_unary(
        "/servekit.v1.Tasks/Sentiment", request_serializer=None, response_deserializer=None
    )
    err = rpc_error(lambda: call(broken, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/servekit.v1.Tasks/Sentiment: the request is not a valid message" in (err.details() or "")
    response = TasksStub(channel).Classify(
        pb.ClassifyRequest(model=pb.ModelRef(name="tags"), images=jpegs[:1])
    )
    assert len(response.results) == 1  # and the server is fine
