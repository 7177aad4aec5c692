"""Requests/s and p50/p99 latency of TorchServe (HTTP) against `serve-kit` (gRPC), same bundle.

Both get the same bundle, the same JPEGs (one per request), the same batching (batch = clients,
TorchServe's `max_batch_delay_ms` = serve-kit's queue delay), the same cores (the first half, the
clients the rest; `--no-pin`: anywhere) and the same parallelism: `--workers` TorchServe workers
against as many serve-kit decode threads, and the same intra-op threads in all; the same
number of clients each send their own image back to back: raw HTTP/1.1 keep-alive over asyncio
streams (`Content-Type: image/jpeg`, the lightest client at hand) to TorchServe, the unmodified
tritonclient (aio) `images` input to serve-kit. One server runs at a time: each run starts one, checks
it, times it and stops it, then the other (the order alternates across runs; each TorchServe gets its
own folder). The first answers of both for the same image must carry the same labels, or the bench
fails. CPU per request of this process (the clients) and of each server's processes is taken over the
timed window. Several runs; medians and ranges. Prints one JSON line. Target: serve-kit >= 2x
TorchServe's throughput, lower p99.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

# tritonclient registers the `inference.*` protobuf messages process-wide, as serving.wire does:
# this process must never import serving.wire / v2 / server / tasks (serving.bundle is fine).
import tritonclient.grpc.aio as triton

from serving.bundle import load_bundle, resolve_version
from training.archive import TorchServeConfig, archive_bundle

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # the benches' helpers; the tests' TorchServe
from load import Call, Cores, Probe, Window, drive, load_average, span, split_cores  # noqa: E402
from serve_throughput import DEFAULT_BUNDLE, build_bundle  # noqa: E402
from servers import HttpClient, Server, bench_env, make_jpegs, repository  # noqa: E402

from tests.serving.torchserve import running_torchserve  # noqa: E402

_BATCH_LOGGED = re.compile(r"batch_size=(\d+)")  # what our TorchServe handler logs for each batch


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
    cores: Cores


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
            process = psutil.Process(server.process.pid)
            window = await drive(calls, process, setup.warmup, setup.seconds, server.counts)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        return window, answer

    with (setup.tmp / "serve-kit.log").open("w+") as log:
        with setup.cores.on_server_cores():
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
            window = await drive([c.post for c in clients], java, setup.warmup, setup.seconds, batches)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        return window, answer

    with (
        setup.cores.on_server_cores(),
        running_torchserve(setup.store, f"{setup.name}={setup.name}", root) as ts,
    ):
        java = psutil.Process(int((root / "tmp" / ".model_server.pid").read_text().split()[0]))
        os.sched_setaffinity(0, setup.cores.client)

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
    server_cpu_us_per_req_runs: dict[str, object]


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
        server_cpu_us_per_req_runs=span([w.server_us_per_item for w in windows], 0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help=f"models/<name>[/<version>] (default: {DEFAULT_BUNDLE})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-size", type=int, help="both servers' batch size (default: --clients)")
    parser.add_argument("--max-batch-delay-ms", type=int, default=5, help="both servers' batching delay")
    parser.add_argument("--threads", type=int, help="intra-op threads of both servers (default: their cores)")
    parser.add_argument(
        "--workers", type=int, default=1, help="TorchServe workers, and serve-kit's decode threads"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients apart")
    parser.add_argument(
        "--model-size", type=int, default=64, help="input size of the bundle built without --bundle"
    )
    parser.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each timed window")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed window")
    args = parser.parse_args()
    batch_size = args.batch_size or args.clients
    load_before = load_average()

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
        cores = split_cores(not args.no_pin)
        threads = args.threads or len(cores.server)
        archive_bundle(
            path,
            tmp / "store",
            TorchServeConfig(
                batch_size=batch_size,
                max_batch_delay_ms=args.max_batch_delay_ms,
                workers=args.workers,
                threads=max(1, threads // args.workers),  # each worker its share: no oversubscription
            ),
            archive_format="no-archive",
        )
        env = bench_env(batch_size, args.max_batch_delay_ms * 1000, threads, args.workers)
        setup = Setup(
            name, bundle.manifest.labels, jpegs, args.clients, args.warmup, args.seconds,
            repository(bundle, tmp / "repository"), env, tmp / "store", tmp, cores,
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
        "intra_op_threads": threads, "workers_and_decode_threads": args.workers, "cpus": os.cpu_count(),
        "cores": {"server": sorted(cores.server), "client": sorted(cores.client)},
        "load_average": {"before": load_before, "after": load_average()},
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
