"""What the serving benchmarks start and send: a `serve-kit` process, a one-bundle repository, real
JPEGs, and a keep-alive HTTP client for TorchServe.

No V2 client or server protobuf module is imported here: both register `inference.*` in protobuf's
global pool, and each benchmark process chooses which one it holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from serving.bundle import Bundle

__all__ = [
    "FASHION_MNIST",
    "HEADER_LENGTH",
    "HttpClient",
    "Server",
    "bench_env",
    "make_jpegs",
    "repository",
    "v2_images_body",
]

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_LISTENING = re.compile(
    r"listening on 127\.0\.0\.1:(\d+)(?:, metrics on 127\.0\.0\.1:(\d+))?(?:, http on 127\.0\.0\.1:(\d+))?"
)


def bench_env(
    max_batch_size: int, max_queue_delay_us: int, inference_threads: int, decode_threads: int
) -> dict[str, str]:
    """The `SERVE_*` settings of a benchmarked serve-kit: its batching and threads, every port free,
    no repository polling, the CPU, JSON logs."""
    return {
        "SERVE_BATCHING__MAX_BATCH_SIZE": str(max_batch_size),
        "SERVE_BATCHING__MAX_QUEUE_DELAY_US": str(max_queue_delay_us),
        "SERVE_INFERENCE_THREADS": str(inference_threads),
        "SERVE_DECODE_THREADS": str(decode_threads),
        "SERVE_METRICS_PORT": "0",
        "SERVE_HTTP_PORT": "0",
        "SERVE_POLL_INTERVAL_S": "0",
        "SERVE_DEVICE": "cpu",
        "SERVE_LOG_FORMAT": "json",
    }


def make_jpegs(tmp: Path, size: int, count: int) -> tuple[list[bytes], str]:
    """Demo scenes at `size` px (real JPEGs, quality 90); smooth synthetic ones without Fashion-MNIST."""
    if FASHION_MNIST.is_dir():
        from training.demo.scenes import build_multilabel_scenes

        root = tmp / "jpegs"
        build_multilabel_scenes(root, n_train=count, n_valid=0, size=size, seed=1)
        return [p.read_bytes() for p in sorted((root / "train").glob("*.jpg"))][:count], "demo scenes"
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    ys, xs = (np.mgrid[0:size, 0:size, 0:1] / size)[:2]
    jpegs = []
    for _ in range(count):
        across, down = rng.integers(0, 128, (2, 3))
        noise = rng.normal(0, 12, (size, size, 3))
        pixels = np.clip(across * xs + down * ys + noise, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=90)
        jpegs.append(out.getvalue())
    return jpegs, "synthetic gradients"


class Server:
    """`serve-kit serve` in its own process on a free port; stopped with SIGTERM (a clean drain)."""

    def __init__(
        self,
        models: Path,
        env: dict[str, str],
        log: IO[str],
        timeout: float = 120,
        command: list[str] | None = None,
        port: int = 0,
    ) -> None:
        """`command`: another server that prints the same "listening on" line; `port` 0: a free one."""
        serve = [sys.executable, "-m", "serving.cli", "serve", "--models", str(models), "--port", str(port)]
        command = command or serve
        self.log = log
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=log, text=True
        )
        self.pid = self.process.pid
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            match = _LISTENING.search(line)
            if match:
                self.address = f"127.0.0.1:{match[1]}"
                self.metrics_url = f"http://127.0.0.1:{match[2]}/metrics" if match[2] else None
                self.http_address = f"127.0.0.1:{match[3]}" if match[3] else None
                return
            if not line:
                break
        self.stop()
        sys.exit(f"serve-kit did not start:\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def counts(self) -> tuple[float, float]:
        """(items inferred, batches run) so far, from /metrics; zeros without metrics."""
        if self.metrics_url is None:
            return 0.0, 0.0
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        totals = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            name = key.partition("{")[0]
            if name in totals:
                totals[name] += float(value)
        return totals["nv_inference_count"], totals["nv_inference_exec_count"]

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def repository(bundle: Bundle, root: Path) -> Path:
    """A model repository holding only this bundle, at its own name and version."""
    target = root / bundle.manifest.name / str(bundle.manifest.version)
    shutil.copytree(bundle.path, target)
    return root


HEADER_LENGTH = "Inference-Header-Content-Length"  # V2 binary data: the JSON header's bytes


def v2_images_body(images: Sequence[bytes]) -> tuple[bytes, int]:
    """A V2 HTTP infer body of encoded images as one BYTES `images` tensor in binary data after its
    JSON header (Triton's binary-data extension: each element its 4-byte length, then its bytes),
    and the header's length, for `HEADER_LENGTH`."""
    element = b"".join(struct.pack("<I", len(image)) + image for image in images)
    tensor = {"name": "images", "shape": [len(images)], "datatype": "BYTES"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(element)}}]}).encode()
    return header + element, len(header)


class HttpClient:
    """One keep-alive connection POSTing the same body again and again (a JPEG unless `headers` say
    otherwise); the request bytes are built once. Every answer must be 200."""

    def __init__(self, base: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        fields = {"Content-Type": "image/jpeg"} if headers is None else headers
        head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self) -> bytes:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(self.request)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            raise RuntimeError(f"{self.host}:{self.port} answered without a length: {lines}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        if status != 200:
            raise RuntimeError(f"{self.host}:{self.port} answered {status}: {body[:500]!r}")
        return body

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            await writer.wait_closed()
