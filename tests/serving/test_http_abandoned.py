"""A request whose HTTP client hangs up takes its queued work with it, as a cancelled gRPC call does:
the server stops decoding for a client that is gone (it once spent 20 of 22 CPU-seconds so)."""

from __future__ import annotations

import io
import json
import os
import struct
import time
from pathlib import Path

from PIL import Image

from tests.serving.http_raw import connect, exchange, status_of
from tests.serving.servers import copy_bundle, running_server


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heavy_request(images: int) -> bytes:
    """An infer request of `images` 2000×2000 PNGs (16 kB each, ~0.1 s each to decode), binary data."""
    canvas = io.BytesIO()
    Image.new("RGB", (2000, 2000), (10, 200, 30)).save(canvas, "PNG")
    png = canvas.getvalue()
    element = struct.pack("<I", len(png)) + png
    tensor = {
        "name": "images",
        "shape": [images],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(element) * images},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    body = header + element * images
    head = (
        f"POST /v2/models/tags/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n\r\n"
    )
    return head.encode() + body


def test_a_client_that_hangs_up_takes_its_queued_decoding_with_it(bundle_path: Path, tmp_path: Path) -> None:
    copy_bundle(bundle_path, tmp_path)
    with running_server(tmp_path, decode_threads=1, max_inflight_mb=8192) as server:
        assert server.http_address is not None
        pid = server.process.pid
        request = heavy_request(100)  # ≥ 10 s of decoding on the one decode thread
        sock = connect(server.http_address)
        sock.sendall(request)
        before = cpu_seconds(pid)
        time.sleep(1.0)
        assert cpu_seconds(pid) - before > 0.2  # it is decoding
        sock.close()  # the client goes away
        time.sleep(1.0)  # the image being decoded when it left may finish
        before = cpu_seconds(pid)
        time.sleep(2.0)
        spent = cpu_seconds(pid) - before
        assert spent < 0.5, f"{spent:.2f} CPU-seconds spent for a client that left"
        answer = exchange(
            server.http_address, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(answer)[0] == 200
