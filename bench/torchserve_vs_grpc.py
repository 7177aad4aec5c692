"""Requests/s and p50/p99 latency of TorchServe (HTTP) against `serve-kit` (gRPC), same bundle.

Both get the same bundle, the same JPEGs (one per request), the same batching (batch = clients,
TorchServe's `max_batch_delay_ms` = serve-kit's queue delay) and the same intra-op threads; the same
number of clients each send their own image back to back: raw HTTP/1.1 keep-alive over asyncio
streams (`Content-Type: image/jpeg`, the lightest client at hand) to TorchServe, the unmodified
tritonclient (aio) `images` input to serve-kit. One server runs at a time: each run starts one, checks
it, times it and stops it, then the other (the order alternates across runs; each TorchServe gets its
own folder). The first answers of both for the same image must carry the same labels, or the bench
fails. CPU per request of this process (the clients) and of each server is taken over the timed window.
Several runs; medians. Prints one JSON line. Target: serve-kit >= 2x TorchServe's throughput, lower p99.

    python bench/torchserve_vs_grpc.py [--runs 3] [--bundle models/planet] [--clients 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# tritonclient registers the `inference.*` protobuf messages process-wide, as serving.wire does:
# this process must never import serving.wire / v2 / server / tasks (serving.bundle is fine).
import tritonclient.grpc.aio as triton

from serving.bundle import load_bundle, resolve_version
from training.archive import TorchServeConfig, archive_bundle

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # serve_throughput's helpers; the tests' TorchServe
from serve_throughput import DEFAULT_BUNDLE, Server, build_bundle, make_jpegs, repository  # noqa: E402

from tests.serving.torchserve import running_torchserve  # noqa: E402

_BATCH_LOGGED = re.compile(r"batch_size=(\d+)")  # what our TorchServe handler logs for each batch


@dataclass
class Window:
    """One server's timed window: requests/s, latencies, CPU of clients and server, mean batch."""

    items_s: float
    latencies_ms: list[float]
    client_cpu_ms: float
    server_cpu_ms: float
    mean_batch: float | None

    def per_request(self, cpu_ms: float) -> float:
        return cpu_ms / max(1, len(self.latencies_ms))


@dataclass
class Answer:
    """The first answer of a server for the check image: its labels and scores in label order."""

    labels: set[str]
    scores: np.ndarray


@dataclass
class Run:
    first: str
    windows: dict[str, Window] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)


# --- CPU and batch counters ------------------------------------------------------------------


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a process and of its live descendants (TorchServe's workers)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Counters:
    client_cpu: float
    server_cpu: float
    items: float
    batches: float


Probe = Callable[[], tuple[float, float]]  # (items, batches) run by the server so far
Call = Callable[[], Awaitable[Any]]  # one request of one client


def counters(server: psutil.Process, batches: Probe) -> Counters:
    items, runs = batches()
    return Counters(time.process_time(), cpu_seconds(server), items, runs)


# --- HTTP/1.1 for TorchServe -----------------------------------------------------------------


class HttpClient:
    """One keep-alive connection POSTing the same JPEG again and again; the request bytes are built once."""

    def __init__(self, base: str, path: str, body: bytes) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body
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
            raise RuntimeError(f"TorchServe answered without a length: {lines}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        if status != 200:
            raise RuntimeError(f"TorchServe answered {status}: {body[:500]!r}")
        return body

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            await writer.wait_closed()


# --- the timed window ------------------------------------------------------------------------


async def drive(
    calls: Sequence[Call],
    server: psutil.Process,
    batches: Probe,
    warmup: float,
    seconds: float,
) -> Window:
    """Each call is one client sending its request back to back; requests/s and latencies of the
    requests answered within the timed window after the warm-up, and the CPU spent during it."""
    start = time.perf_counter() + warmup
    end = start + seconds
    latencies: list[float] = []

    async def one_client(call: Call) -> None:
        while (began := time.perf_counter()) < end:
            await call()
            answered = time.perf_counter()
            if start <= answered < end:
                latencies.append((answered - began) * 1e3)

    async def sample() -> tuple[Counters, Counters]:
        await asyncio.sleep(start - time.perf_counter())
        before = await asyncio.to_thread(counters, server, batches)
        await asyncio.sleep(end - time.perf_counter())
        return before, await asyncio.to_thread(counters, server, batches)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(one_client(call) for call in calls))
    finally:
        before, after = await sampler
    ran = after.batches - before.batches
    return Window(
        len(latencies) / seconds,
        latencies,
        (after.client_cpu - before.client_cpu) * 1e3,
        (after.server_cpu - before.server_cpu) * 1e3,
        (after.items - before.items) / ran if ran > 0 else None,
    )


# --- the two servers -------------------------------------------------------------------------


@dataclass
class Setup:
    name: str
    labels: Sequence[str]
    jpegs: list[bytes]
    clients: int
    warmup: float
    seconds: float
    models: Path  # serve-kit's repository
    env: dict[str, str]  # serve-kit's settings
    store: Path  # TorchServe's model store
    tmp: Path


def measure_grpc(setup: Setup) -> tuple[Window, Answer]:
    inputs = []
    for jpeg in setup.jpegs:
        tensor = triton.InferInput("images", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpeg], dtype=object))
        inputs.append(tensor)

    async def measure(server: Server) -> tuple[Window, Answer]:
        clients = [triton.InferenceServerClient(server.address) for _ in range(setup.clients)]
        try:
            result = await clients[0].infer(setup.name, [inputs[0]])
            labels, scores = result.as_numpy("labels"), result.as_numpy("scores")
            assert labels is not None and scores is not None
            answer = Answer(set(labels[0].decode().split()), np.asarray(scores[0], np.float64))

            def caller(client: triton.InferenceServerClient, tensor: triton.InferInput) -> Call:
                return lambda: client.infer(setup.name, [tensor])

            calls = [caller(client, inputs[k % len(inputs)]) for k, client in enumerate(clients)]
            window = await drive(
                calls, psutil.Process(server.process.pid), server.counts, setup.warmup, setup.seconds
            )
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        return window, answer

    with (setup.tmp / "serve-kit.log").open("w+") as log:
        server = Server(setup.models, setup.env, log)
        try:
            measured = asyncio.run(measure(server))
        finally:
            code = server.stop()
        if code != 0:
            sys.exit(f"serve-kit exited {code} after SIGTERM:\n{server.stderr()[-3000:]}")
    return measured


def measure_torchserve(setup: Setup, run: int) -> tuple[Window, Answer]:
    root = setup.tmp / f"torchserve-{run}"

    async def measure(base: str, java: psutil.Process, batches: Probe) -> tuple[Window, Answer]:
        path = f"/predictions/{setup.name}"
        clients = [HttpClient(base, path, setup.jpegs[k % len(setup.jpegs)]) for k in range(setup.clients)]
        try:
            first = json.loads(await clients[0].post())
            scores = np.array([first["scores"][label] for label in setup.labels], np.float64)
            answer = Answer(set(first["labels"]), scores)
            window = await drive([c.post for c in clients], java, batches, setup.warmup, setup.seconds)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        return window, answer

    with running_torchserve(setup.store, f"{setup.name}={setup.name}", root) as ts:
        java = psutil.Process(int((root / "tmp" / ".model_server.pid").read_text().split()[0]))

        def batches() -> tuple[float, float]:
            sizes = [int(n) for n in _BATCH_LOGGED.findall(ts.model_log())]
            return float(sum(sizes)), float(len(sizes))

        measured = asyncio.run(measure(ts.inference, java, batches))
    try:
        java.wait(60)  # `--stop` only signals: the next server must not share the CPU with a dying JVM
    except psutil.TimeoutExpired:
        sys.exit(f"TorchServe (pid {java.pid}) still running 60 s after --stop")
    return measured


# --- the report ------------------------------------------------------------------------------


@dataclass
class Summary:
    items_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_ms_per_req: float
    server_cpu_ms_per_req: float
    mean_batch: float | None
    runs: list[float]


def summary(windows: list[Window]) -> Summary:
    """Medians over the runs."""
    batches = [w.mean_batch for w in windows if w.mean_batch is not None]
    return Summary(
        items_s=round(statistics.median(w.items_s for w in windows), 1),
        p50_ms=round(statistics.median(float(np.percentile(w.latencies_ms, 50)) for w in windows), 2),
        p99_ms=round(statistics.median(float(np.percentile(w.latencies_ms, 99)) for w in windows), 2),
        client_cpu_ms_per_req=round(statistics.median(w.per_request(w.client_cpu_ms) for w in windows), 3),
        server_cpu_ms_per_req=round(statistics.median(w.per_request(w.server_cpu_ms) for w in windows), 3),
        mean_batch=round(statistics.median(batches), 1) if batches else None,
        runs=[round(w.items_s, 1) for w in windows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help=f"models/<name>[/<version>] (default: {DEFAULT_BUNDLE})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-size", type=int, help="both servers' batch size (default: --clients)")
    parser.add_argument("--max-batch-delay-ms", type=int, default=5, help="both servers' batching delay")
    parser.add_argument("--threads", type=int, help="intra-op threads of both servers (default: all cores)")
    parser.add_argument(
        "--model-size", type=int, default=64, help="input size of the bundle built without --bundle"
    )
    parser.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each timed window")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed window")
    args = parser.parse_args()
    batch_size = args.batch_size or args.clients

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = args.bundle or (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None)
        bundle_label = (
            str(resolve_version(path)) if path else f"built: resnet18, {args.model_size} px, 1 epoch"
        )
        path = path or build_bundle(tmp, args.model_size)
        bundle = load_bundle(path)
        name = bundle.manifest.name
        jpegs, jpeg_source = make_jpegs(tmp, args.jpeg_size, count=2 * args.clients)
        threads = args.threads or os.cpu_count() or 1
        archive_bundle(
            path,
            tmp / "store",
            TorchServeConfig(
                batch_size=batch_size, max_batch_delay_ms=args.max_batch_delay_ms, workers=1, threads=threads
            ),
            archive_format="no-archive",
        )
        env = {
            "SERVE_BATCHING__MAX_BATCH_SIZE": str(batch_size),
            "SERVE_BATCHING__MAX_QUEUE_DELAY_US": str(args.max_batch_delay_ms * 1000),
            "SERVE_INFERENCE_THREADS": str(threads),
            "SERVE_METRICS_PORT": "0",
            "SERVE_HTTP_PORT": "0",
            "SERVE_POLL_INTERVAL_S": "0",
            "SERVE_DEVICE": "cpu",
            "SERVE_LOG_FORMAT": "json",
        }
        setup = Setup(
            name, bundle.manifest.labels, jpegs, args.clients, args.warmup, args.seconds,
            repository(bundle, tmp / "repository"), env, tmp / "store", tmp,
        )  # fmt: skip
        runs: list[Run] = []
        for index in range(args.runs):
            # Alternate which goes first, so a slow spell on the machine hurts both alike.
            order = ["grpc", "torchserve"] if index % 2 == 0 else ["torchserve", "grpc"]
            run = Run(first=order[0])
            for protocol in order:
                measured = measure_grpc(setup) if protocol == "grpc" else measure_torchserve(setup, index)
                run.windows[protocol], run.answers[protocol] = measured
            grpc, torchserve = run.answers["grpc"], run.answers["torchserve"]
            if grpc.labels != torchserve.labels:
                sys.exit(
                    f"run {index}: the same image got different labels: serve-kit {sorted(grpc.labels)}, "
                    f"TorchServe {sorted(torchserve.labels)}"
                )
            runs.append(run)

    grpc_summary = summary([run.windows["grpc"] for run in runs])
    torchserve_summary = summary([run.windows["torchserve"] for run in runs])
    ratio = grpc_summary.items_s / torchserve_summary.items_s
    p99_lower = grpc_summary.p99_ms < torchserve_summary.p99_ms
    per_run = [
        {
            "first": run.first,
            "grpc_items_s": round(run.windows["grpc"].items_s, 1),
            "torchserve_items_s": round(run.windows["torchserve"].items_s, 1),
            "ratio": round(run.windows["grpc"].items_s / run.windows["torchserve"].items_s, 3),
            "labels_checked": sorted(run.answers["grpc"].labels),
            "scores_max_diff": float(
                np.max(np.abs(run.answers["grpc"].scores - run.answers["torchserve"].scores))
            ),
        }
        for run in runs
    ]
    jpeg_bytes = round(statistics.mean(map(len, jpegs)))
    print(json.dumps({
        "bench": "torchserve_vs_grpc",
        "bundle": bundle_label, "size": bundle.image_size, "labels": len(setup.labels),
        "jpegs": jpeg_source, "jpeg_size": args.jpeg_size, "jpeg_bytes_mean": jpeg_bytes,
        "clients": args.clients, "batch_size": batch_size, "max_batch_delay_ms": args.max_batch_delay_ms,
        "intra_op_threads": threads, "cpus": os.cpu_count(),
        "torchserve_format": "no-archive", "http_client": "asyncio streams, HTTP/1.1 keep-alive",
        "grpc_client": "tritonclient.grpc.aio",
        "runs": args.runs, "warmup": args.warmup, "seconds": args.seconds,
        "grpc": asdict(grpc_summary), "torchserve": asdict(torchserve_summary),
        "throughput_ratio": round(ratio, 3),
        "p99_ratio": round(grpc_summary.p99_ms / torchserve_summary.p99_ms, 3),
        "p99_lower": p99_lower, "target": 2.0, "target_met": ratio >= 2.0 and p99_lower,
        "per_run": per_run,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
