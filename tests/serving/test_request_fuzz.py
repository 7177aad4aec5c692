"""Property: no ModelInferRequest makes the decoder fail with anything but its intended status.

The requests are tritonclient's own V2 messages (the standard client's schema), built by hypothesis
from valid and broken pieces; the decoder runs in-process against a real served model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from serving.bundle import load_bundle
from serving.server.batcher import BatchingConfig
from serving.server.decode_turns import DecodeTurns
from serving.server.error_status import status_for
from serving.server.prometheus import ServerMetrics
from serving.server.served_model import ServedModel
from serving.server.tensors import pack_bytes
from serving.server.v2_requests import queue_timeout, read_input, requested_outputs
from tests.serving.payloads import declared_png


@pytest.fixture(scope="module")
def served(bundle_path: Path, jpegs: list[bytes]) -> Iterator[tuple[ServedModel, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    pool = ThreadPoolExecutor(2)
    model = ServedModel(
        load_bundle(bundle_path),
        "onnx",
        "cpu",
        BatchingConfig(8, 1000, 64),
        DecodeTurns(pool, 2),
        ServerMetrics().for_model("tags", 1),
        40_000_000,
    )

    async def start() -> None:
        model.start()

    loop.run_until_complete(start())
    yield model, loop
    loop.run_until_complete(model.stop())
    pool.shutdown()
    loop.close()


PIECES = st.sampled_from(
    [b"", b"\x00", b"junk", b"\xff\xd8\xff", declared_png(8_000, 6_000), declared_png(1, 20_000)]
)


@st.composite
def requests(draw: st.DrawFn, jpegs: list[bytes]) -> pb.ModelInferRequest:
    name = draw(st.sampled_from(["images", "pixels", "x", ""]))
    datatype = draw(st.sampled_from(["BYTES", "FP32", "FP16", "INT64", "", "BF16"]))
    shape = draw(
        st.one_of(
            st.lists(st.integers(-3, 5), max_size=5),
            st.sampled_from([[1, 3, 32, 32], [2, 3, 32, 32], [1], [2], [2, 1], [10**12], [1] * 70]),
        )
    )
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    request = pb.ModelInferRequest(model_name="tags", inputs=[tensor] * draw(st.integers(1, 2)))
    images = draw(st.lists(st.one_of(st.sampled_from(jpegs), PIECES, st.binary(max_size=64)), max_size=4))
    raw = draw(
        st.one_of(
            st.just(pack_bytes(images)),
            st.binary(max_size=64),
            st.just(np.zeros(max(0, min(4096, int(np.prod(shape) if shape else 0))), np.float32).tobytes()),
        )
    )
    how = draw(st.sampled_from(["raw", "typed", "both", "none", "two raw"]))
    if how in ("raw", "both"):
        request.raw_input_contents.append(raw)
    if how == "two raw":
        request.raw_input_contents.extend([raw, raw])
    if how in ("typed", "both"):
        request.inputs[0].contents.bytes_contents.extend(images)
        request.inputs[0].contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    for output in draw(st.lists(st.sampled_from(["scores", "labels", "nope"]), max_size=3)):
        request.outputs.add(name=output)
    kind = draw(
        st.sampled_from(["int64_param", "uint64_param", "string_param", "bool_param", "double_param", None])
    )
    if kind is not None:
        value = {
            "int64_param": -5,
            "uint64_param": 10**6,
            "string_param": "soon",
            "bool_param": True,
            "double_param": 0.5,
        }[kind]
        setattr(request.parameters["timeout"], kind, value)
    return request


def test_every_request_is_answered_or_refused_with_its_intended_status(
    served: tuple[ServedModel, asyncio.AbstractEventLoop], jpegs: list[bytes]
) -> None:
    model, loop = served

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests(jpegs))
    def check(request: pb.ModelInferRequest) -> None:
        try:
            requested_outputs(request, model)
            timeout = queue_timeout(request, None)
            assert timeout is None or timeout > 0
            items, sizes = loop.run_until_complete(read_input(request, model))
        except Exception as err:
            code, message = status_for(err)
            assert code == grpc.StatusCode.INVALID_ARGUMENT or code == grpc.StatusCode.RESOURCE_EXHAUSTED, (
                f"{type(err).__name__}: {err}"
            )
            assert message and len(message) <= 1000
            return
        assert items and all(item.shape == (3, 32, 32) and item.dtype == np.float32 for item in items)
        assert len(sizes) == len(items)

    check()
