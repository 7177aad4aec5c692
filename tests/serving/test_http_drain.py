"""The drain and HTTP keep-alive: while the server drains, every answer says `Connection: close` and
quiet keep-alive connections are closed, so no client writes a request on a connection about to be
cut. Every request written is answered; a client may find the door shut, never a request lost."""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.serving.http_raw import connect, read_all, read_answer
from tests.serving.servers import ServerProcess, copy_bundle, running_server

PRESTOP_S = 3.0


def infer_request(jpeg: bytes) -> bytes:
    element = struct.pack("<I", len(jpeg)) + jpeg
    tensor = {
        "name": "images",
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(element)},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    head = (
        f"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(header) + len(element)}\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n\r\n"
    )
    return head.encode() + header + element


def keep_alive_client(address: str, request: bytes, outcomes: list[str]) -> None:
    """Requests back to back on one connection, as long as the server keeps it: a connection the
    server closed while idle is replaced (checked before writing, as urllib3 does); an answer with
    `Connection: close` means go elsewhere."""
    sock: socket.socket | None = None
    while True:
        if sock is None:
            try:
                sock = connect(address)
            except OSError:
                outcomes.append("refused")
                return
        if select.select([sock], [], [], 0)[0]:  # readable while idle: the server closed it
            sock.close()
            sock = None
            outcomes.append("closed while idle")
            continue
        try:
            sock.sendall(request)
        except OSError:
            outcomes.append("cut while writing")
            return
        answer = read_answer(sock)
        if answer is None:
            outcomes.append("written, never answered")
            return
        outcomes.append(f"answered {answer[0]}")
        if answer[1].get("connection", "").lower() == "close":
            sock.close()
            return


def wait_for_drain(server: ServerProcess) -> None:
    deadline = time.monotonic() + 10
    url = f"http://{server.http_address}/v2/health/ready"
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError as err:
            assert err.code == 400
            return
        time.sleep(0.02)
    raise AssertionError("the server never reported not ready")


def test_keep_alive_clients_lose_no_request_during_a_drain(
    bundle_path: Path, jpegs: list[bytes], tmp_path: Path
) -> None:
    copy_bundle(bundle_path, tmp_path)
    with running_server(tmp_path, drain_prestop_s=PRESTOP_S) as server:
        address = server.http_address
        assert address is not None
        request = infer_request(jpegs[0])
        idle = connect(address)  # answered once, then quiet
        idle.sendall(request)
        assert read_answer(idle) is not None
        outcomes: list[list[str]] = [[] for _ in range(4)]
        clients = [threading.Thread(target=keep_alive_client, args=(address, request, o)) for o in outcomes]
        for client in clients:
            client.start()
        time.sleep(0.5)
        with ThreadPoolExecutor(1) as pool:
            stopped = pool.submit(server.stop)  # SIGTERM
            wait_for_drain(server)
            drain_began = time.monotonic()
            assert read_all(idle, timeout=30) == b""  # the quiet connection is closed...
            assert time.monotonic() - drain_began < PRESTOP_S - 1  # ...early in the pre-stop period
            idle.close()
            for client in clients:
                client.join(60)
            assert stopped.result(timeout=60) == 0
    for client_outcomes in outcomes:
        assert client_outcomes.count("answered 200") > 1, client_outcomes
        assert not [o for o in client_outcomes if o in ("cut while writing", "written, never answered")], (
            client_outcomes[-5:]
        )
