"""Many clients at once: batched together, each answered alone, a full queue or a late request refused."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from tests.serving.payloads import images_input
from tests.serving.servers import metric_value, running_server


def test_concurrent_clients_share_batches_and_each_gets_its_own_answer(
    models: Path, bundle_path: Path, tag_images: Path
) -> None:
    images = [(tag_images / "train" / f"img_{i:03d}.jpg").read_bytes() for i in range(16)]
    expected = load_bundle(bundle_path).predict(images)
    with running_server(models, batching__max_batch_size=8, batching__max_queue_delay_us=20_000) as server:

        def client(index: int) -> list[str]:
            connection = triton.InferenceServerClient(server.address)
            got = []
            for _ in range(4):
                result = connection.infer("tags", [images_input([images[index]])])
                got.append(result.as_numpy("labels")[0].decode())
            return got

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(client, range(16)))
        metrics = server.metrics()

    for index, got in enumerate(answers):
        assert got == [" ".join(expected[index]["labels"])] * 4
    labels = {"model": "tags", "version": "1"}
    batches = metric_value(metrics, "nv_inference_batch_size_count", **labels)
    items = metric_value(metrics, "nv_inference_batch_size_sum", **labels)
    singles = metric_value(metrics, "nv_inference_batch_size_bucket", **labels, le="1.0")
    assert items == 64
    assert batches < items and singles < batches, (
        f"{batches} batches for {items} items, {singles} of one item"
    )


def test_a_bad_image_fails_only_its_own_request(models: Path, jpegs: list[bytes]) -> None:
    with running_server(models, batching__max_batch_size=8, batching__max_queue_delay_us=50_000) as server:

        def send(images: list[bytes]) -> str:
            try:
                triton.InferenceServerClient(server.address).infer("tags", [images_input(images)])
                return "OK"
            except InferenceServerException as err:
                return str(err.status())

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(
                pool.map(send, [[jpegs[0]], [b"junk"], [jpegs[1], jpegs[2]], [jpegs[3]], [b""], [jpegs[4]]])
            )
    assert outcomes == ["OK", "StatusCode.INVALID_ARGUMENT", "OK", "OK", "StatusCode.INVALID_ARGUMENT", "OK"]


def test_a_full_queue_and_a_passed_deadline_are_refused_before_inference(
    models: Path, jpegs: list[bytes]
) -> None:
    settings = {
        "batching__max_batch_size": 4,
        "batching__max_queue_size": 2,
        "batching__max_queue_delay_us": 1_000_000,
    }
    with running_server(models, **settings) as server:
        client = triton.InferenceServerClient(server.address)
        with pytest.raises(InferenceServerException) as never:
            client.infer("tags", [images_input(jpegs[:3])])
        assert never.value.status() == "StatusCode.INVALID_ARGUMENT"  # retrying cannot help
        assert "3 items in one request; at most 2 (max_queue_size) fit" in never.value.message()

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.infer, "tags", [images_input(jpegs[:2])])  # waits 1 s for its batch
            deadline = time.monotonic() + 30
            while (
                metric_value(
                    server.metrics(), "nv_inference_pending_request_count", model="tags", version="1"
                )
                < 2
            ):
                assert time.monotonic() < deadline, "the first request never reached the queue"
                time.sleep(0.02)
            with pytest.raises(InferenceServerException) as full:
                client.infer("tags", [images_input(jpegs[2:3])])
            assert first.result().as_numpy("scores").shape == (2, 4)
        assert full.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "queue is full (2 of 2 items waiting, 1 more asked); retry later" in full.value.message()

        # The batch closes only after 1 s; the request allows itself 0.1 s in the queue.
        with pytest.raises(InferenceServerException) as late:
            client.infer("tags", [images_input(jpegs[:1])], timeout=100_000)
        assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert "deadline passed while queued; not run" in late.value.message()

        # A gRPC deadline works the same way: the client stops waiting, the item is withdrawn.
        with pytest.raises(InferenceServerException) as gave_up:
            client.infer("tags", [images_input(jpegs[:1])], client_timeout=0.2)
        assert gave_up.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        time.sleep(1.5)  # past the batch's 1 s delay: had the item stayed queued, it would have run by now
        metrics = server.metrics()
    labels = {"model": "tags", "version": "1"}
    assert metric_value(metrics, "nv_inference_count", **labels) == 2  # the first request's, no more
    assert metric_value(metrics, "nv_inference_request_failure", **labels, reason="RESOURCE_EXHAUSTED") == 1


def test_sigterm_lets_in_flight_requests_finish(models: Path, jpegs: list[bytes]) -> None:
    with running_server(
        models, batching__max_batch_size=64, batching__max_queue_delay_us=1_500_000
    ) as server:
        outcome: list[str] = []

        def slow_request() -> None:
            result = triton.InferenceServerClient(server.address).infer("tags", [images_input(jpegs[:2])])
            outcome.append(result.get_response().model_version)

        thread = threading.Thread(target=slow_request)
        thread.start()
        # Wait until the request is queued (it waits 1.5 s for its batch), then ask the server to stop.
        deadline = time.monotonic() + 30
        while (
            metric_value(server.metrics(), "nv_inference_pending_request_count", model="tags", version="1")
            < 2
        ):
            assert time.monotonic() < deadline, "the request never reached the queue"
            time.sleep(0.02)
        assert server.stop() == 0
        thread.join(30)
    assert outcome == ["1"]
