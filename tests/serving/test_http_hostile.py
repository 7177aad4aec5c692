"""The HTTP front end against heavy and hostile requests: compression bombs and huge JSON bodies do
not stall the event loop gRPC shares; a flood of connections meets a cap and timeouts, not an
exhausted process; malformed HTTP is answered in JSON and logged in a few throttled lines."""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub

from tests.serving.http_raw import ProbeWatch, connect, exchange, read_all, status_of
from tests.serving.servers import ServerProcess, copy_bundle, running_server

PROBE_WAIT_S = 0.5  # the promise: no probe waits longer while a hostile request is handled
CAP = 20


@pytest.fixture(scope="module")
def server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile-models")
    copy_bundle(bundle_path, root)
    with running_server(
        root,
        max_message_mb=64,
        http_max_connections=CAP,
        http_header_timeout_s=1,
        http_body_timeout_s=2,
        http_idle_timeout_s=3,
        batching__max_batch_size=64,
    ) as running:
        yield running


def http(server: ServerProcess) -> str:
    assert server.http_address is not None
    return server.http_address


def post(server: ServerProcess, path: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{server.http_address}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def gzip_bomb(segments: int) -> bytes:
    """A gzip body of ~1 kB per MiB of zeros it inflates to: fully flushed segments are identical."""
    zeros = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + again * segments


def brotli_bomb(gib: int) -> bytes:
    """A br body of ~14 bytes per 16 MiB of zeros it inflates to (flushed segments repeat)."""
    zeros = bytes(16 << 20)
    packer = brotli.Compressor(quality=5, lgwin=24)
    first = packer.process(zeros) + packer.flush()
    again = packer.process(zeros) + packer.flush()
    return first + again * (gib * 64 - 1)


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_a_compression_bomb_is_413_and_no_probe_waits(server: ServerProcess, encoding: str) -> None:
    bomb = brotli_bomb(10) if encoding == "br" else gzip_bomb(10_000)
    assert len(bomb) < (16_000 if encoding == "br" else 10_500_000)  # 10 GiB inflated
    with ProbeWatch(server.address, http(server)) as watch, ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _: post(server, "/v2/models/tags/infer", bomb, **{"Content-Encoding": encoding}),
                range(4),
            )
        )
        time.sleep(0.3)  # probes after the answers too: nothing goes on inflating
    assert watch.probes > 4 and watch.worst < PROBE_WAIT_S, watch.worst
    for status, content in answers:
        assert status == 413
        assert "inflates past the limit of 67,108,864 bytes" in json.loads(content)["error"]


def test_a_compressed_body_that_is_not_what_it_says_is_400(server: ServerProcess) -> None:
    status, content = post(
        server, "/v2/models/tags/infer", b"not gzip at all", **{"Content-Encoding": "gzip"}
    )
    assert status == 400 and "the gzip request body does not inflate" in json.loads(content)["error"]
    status, content = post(server, "/v2/models/tags/infer", b"{}", **{"Content-Encoding": "zstd-x"})
    assert status == 415 and "Content-Encoding 'zstd-x' is not supported" in json.loads(content)["error"]


def test_a_60_mb_json_body_is_answered_and_no_probe_waits(server: ServerProcess) -> None:
    items = 900
    pixels = np.random.default_rng(0).random((items, 3, 32, 32))  # full-precision floats: ~20 bytes each
    request = {
        "inputs": [
            {"name": "pixels", "shape": [items, 3, 32, 32], "datatype": "FP32", "data": pixels.tolist()}
        ],
        "outputs": [{"name": "scores", "parameters": {"binary_data": False}}],
    }
    body = json.dumps(request).encode()
    assert 55e6 < len(body) < 64 << 20
    with ProbeWatch(server.address, http(server)) as watch:
        status, content = post(server, "/v2/models/tags/infer", body)
        time.sleep(0.3)
    assert status == 200, content[:300]
    (scores,) = json.loads(content)["outputs"]
    assert scores["shape"] == [items, 4] and len(scores["data"]) == items * 4
    assert watch.probes > 4 and watch.worst < PROBE_WAIT_S, watch.worst


def test_past_the_connection_cap_new_connections_are_refused_while_open_ones_work(
    server: ServerProcess,
) -> None:
    kept = connect(http(server))  # opened before the flood
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    kept.sendall(live)
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")
    flood = [connect(http(server)) for _ in range(3 * CAP)]  # half-open: they send nothing
    try:
        time.sleep(0.5)  # the server has taken them all in (its idle timeout is 3 s)
        refused = 0
        for sock in flood:
            if not select.select([sock], [], [], 0)[0]:
                continue  # held open: under the cap
            answer = read_all(sock, timeout=5)
            if answer:
                status, _, content = status_of(answer)
                assert status == 503 and "HTTP connections" in json.loads(content)["error"]
            refused += 1
        assert 2 * CAP <= refused < 3 * CAP  # the cap holds, counting the kept connection
        kept.sendall(live)  # the open connection still works
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        with grpc.insecure_channel(server.address) as channel:  # and gRPC is untouched
            assert GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    finally:
        for sock in flood:
            sock.close()
        kept.close()


def test_idle_connections_are_closed_so_new_ones_get_in(server: ServerProcess) -> None:
    idle = [connect(http(server)) for _ in range(CAP)]  # fill the cap, send nothing
    try:
        for sock in idle:
            assert read_all(sock, timeout=20) == b""  # closed by the idle timeout (3 s)
        answer = exchange(
            http(server), b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(answer)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_half_sent_request_line_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    with connect(http(server)) as sock:
        sock.sendall(b"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Le")
        started = time.monotonic()
        answer = read_all(sock, timeout=20)
        waited = time.monotonic() - started
    status, headers, content = status_of(answer)
    assert status == 408 and headers["connection"] == "close"
    assert "did not arrive within 1 s (http_header_timeout_s)" in json.loads(content)["error"]
    assert 0.9 < waited < 2.9  # the idle timeout (3 s) did not do it


def test_a_body_sent_too_slowly_is_408(server: ServerProcess) -> None:
    with connect(http(server)) as sock:
        sock.sendall(b"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = read_all(sock, timeout=20)
        waited = time.monotonic() - started
    status, headers, content = status_of(answer)
    assert status == 408 and headers["connection"] == "close"
    assert "did not arrive within 2 s (http_body_timeout_s)" in json.loads(content)["error"]
    assert waited < 6  # closed with the answer: no lingering for the rest of a slow body


MALFORMED = {
    "content-length-abc": (
        b"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        400,
    ),
    "bad-chunk-size": (
        b"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
        400,
    ),
    "oversized-header": (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        431,
    ),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9), 505),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_http_is_answered_in_json_with_a_precise_status(server: ServerProcess, kind: str) -> None:
    data, expected = MALFORMED[kind]
    for _ in range(200):
        status, headers, content = status_of(exchange(http(server), data))
        assert (status, headers["content-type"].split(";")[0]) == (expected, "application/json"), content
        assert json.loads(content)["error"]


def test_a_body_cut_short_is_dropped_quietly(server: ServerProcess) -> None:
    for _ in range(200):
        with connect(http(server)) as sock:
            sock.sendall(b"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            sock.shutdown(socket.SHUT_WR)
            read_all(sock, timeout=10)


# Last, as it stops the module's server: everything above was logged in a bounded number of lines.
def test_the_log_stays_short_and_carries_no_traceback(server: ServerProcess) -> None:
    assert server.stop() == 0
    lines = server.stderr.splitlines()
    assert len(lines) < 300, "\n".join(lines[:40])
    bad = [line for line in lines if "Traceback" in line or not line.startswith("{")]
    assert not bad, bad[:10]
