"""Raw HTTP/1.1 on a socket, for requests no well-behaved client sends, and a probe watch: how long
gRPC's ServerLive and HTTP's /v2/health/live keep a caller waiting while something else goes on."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub

from tests.serving.servers import ServerProcess


def connect(address: str, timeout: float = 10) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection; TimeoutError if it does not
    within `timeout` seconds."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def exchange(address: str, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection; what comes back before the server closes it."""
    with connect(address, timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_all(sock, timeout)


def status_of(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


class ProbeWatch:
    """In a thread, alternately asks gRPC ServerLive and GET /v2/health/live; `worst` is the longest
    any probe waited."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.worst, self.probes = 0.0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProbeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)

    def _run(self) -> None:
        url = f"http://{self.server.http_address}/v2/health/live"
        with grpc.insecure_channel(self.server.address) as channel:
            stub = GRPCInferenceServiceStub(channel)
            stub.ServerLive(pb.ServerLiveRequest(), timeout=30)  # connected before the watch starts
            while not self._done.is_set():
                for probe in ("grpc", "http"):
                    started = time.monotonic()
                    try:
                        if probe == "grpc":
                            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
                        else:
                            with urllib.request.urlopen(url, timeout=30) as response:
                                assert response.status == 200
                    except Exception:  # not answered in 30 s, or not live: as bad as it gets
                        self.worst = float("inf")
                    self.worst = max(self.worst, time.monotonic() - started)
                    self.probes += 1
                time.sleep(0.02)
