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


def read_answer(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str]] | None:
    """One answer on a keep-alive connection, its body read to its length: (status, lower-case
    headers), or None if the connection was cut."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return int(lines[0].split()[1]), headers


class ProbeWatch:
    """In a thread, alternately asks gRPC ServerLive (at `address`) and GET /v2/health/live (at
    `http_address`), every ~20 ms; `waits` holds the longest each probe waited."""

    def __init__(self, address: str, http_address: str) -> None:
        self.address, self.http_address = address, http_address
        self.waits = {"grpc": 0.0, "http": 0.0}
        self.probes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def worst(self) -> float:
        return max(self.waits.values())

    def __enter__(self) -> ProbeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(60)

    def _run(self) -> None:
        url = f"http://{self.http_address}/v2/health/live"
        with grpc.insecure_channel(self.address) as channel:
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
                        waited = time.monotonic() - started
                    except Exception:  # not answered in 30 s, or not live: as bad as it gets
                        waited = float("inf")
                    self.waits[probe] = max(self.waits[probe], waited)
                    self.probes += 1
                time.sleep(0.02)
