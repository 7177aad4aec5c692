"""Requests/s, CPU and memory of one serve-kit process against several on one port (reuse_port).

The same bundle and the same total threads on both sides, measured in the same run and alternated:
(a) one `serve-kit serve` with `inference_threads` = `decode_threads` = `--threads` (default 2);
(b) `--processes` (default 2) of them started with `SERVE_REUSE_PORT=true` on the same gRPC port,
each with `--threads` / `--processes` inference and decode threads. `reuse_port` covers the gRPC and
HTTP ports; HTTP is off on both sides (`SERVE_HTTP_PORT=none`), and each process has its own metrics
port (0: a free one), read for its own `nv_inference_count`. 32 tritonclient gRPC aio clients send
one JPEG per request, back to back, each on its own channel with a local subchannel pool, so each
client holds its own TCP connection and the kernel spreads the connections over (b)'s processes.

Pinning as in `serve_throughput.py`: every server process on the first half of the cores, the
clients on the rest (`--no-pin`: anywhere). All servers stay up for the whole run (an idle one costs
no CPU); each round runs a warm-up and a `--seconds` window of (a) and of (b), which goes first
alternating. Reported per side: requests/s, server CPU ms per request (user + system over the
window, summed over the side's processes), total RSS of the side's processes idle (before any load)
and after each window, p50/p99 latency, requests per process of (b); medians and ranges of the runs,
the ratio (b)/(a) and the load average. Prints one JSON line.

    python bench/processes.py [--runs 3] [--seconds 5] [--processes 2] [--threads 2]
    python bench/processes.py --bundle models/planet
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import psutil

# tritonclient registers the `inference.*` protobuf messages process-wide, as serving.wire does:
# this process must never import serving.wire / v2 / server / tasks (serving.bundle is fine).
import tritonclient.grpc.aio as triton

from serving.bundle import load_bundle, resolve_version

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from load import Call, Window, drive, load_average, span, split_cores  # noqa: E402
from servers import Server, bench_env, make_jpegs, repository  # noqa: E402

# Each client its own TCP connection: gRPC channels with the same target and arguments otherwise
# share one connection through the process-wide subchannel pool, and it would reach one process.
CHANNEL_ARGS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


def rss_mb(processes: Sequence[psutil.Process]) -> float:
    """Resident memory of the processes and their live children, summed, in MiB."""
    total = 0
    for process in processes:
        for each in [process, *process.children(recursive=True)]:
            try:
                total += each.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    return total / (1 << 20)


def counts(servers: Sequence[Server]) -> tuple[float, float]:
    """Items inferred and batches run so far, summed over the servers."""
    each = [server.counts() for server in servers]
    return sum(c[0] for c in each), sum(c[1] for c in each)


def timed(
    servers: Sequence[Server], model: str, inputs: Sequence[triton.InferInput], args: argparse.Namespace
) -> tuple[Window, list[float], float]:
    """One warm-up and timed window against `servers` (all on one port): the window, each server's
    requests over warm-up and window (its own nv_inference_count), and the servers' RSS after it."""
    address = servers[0].address
    processes = [psutil.Process(server.process.pid) for server in servers]
    before = [server.counts()[0] for server in servers]

    async def run() -> Window:
        channels = [
            triton.InferenceServerClient(address, channel_args=CHANNEL_ARGS) for _ in range(args.clients)
        ]

        def caller(k: int) -> Call:
            return lambda: channels[k].infer(model, [inputs[k % len(inputs)]])

        try:
            calls = [caller(k) for k in range(args.clients)]
            return await drive(calls, processes, args.warmup, args.seconds, lambda: counts(servers))
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))

    window = asyncio.run(run())
    answered = [server.counts()[0] - b for server, b in zip(servers, before, strict=True)]
    return window, answered, rss_mb(processes)


def summary(
    windows: list[Window], answered: list[list[float]], rss: list[float], idle: float
) -> dict[str, object]:
    batches = [w.mean_batch for w in windows if w.mean_batch is not None]
    return {
        "requests_s": span([w.items_s for w in windows]),
        "server_cpu_ms_per_request": span([w.server_us_per_item / 1e3 for w in windows], 3),
        "p50_ms": span([w.percentile_ms(50) for w in windows], 2),
        "p99_ms": span([w.percentile_ms(99) for w in windows], 2),
        "rss_mb_idle": round(idle, 1),
        "rss_mb_after": span(rss),
        "mean_batch": round(statistics.median(batches), 1) if batches else None,
        "requests_per_process": [[round(n) for n in run] for run in answered],  # warm-up + window
        "runs": [round(w.items_s, 1) for w in windows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="models/<name>[/<version>] (default: build one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each timed window")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="serve-kit processes of side (b)")
    parser.add_argument(
        "--threads", type=int, default=2, help="inference (and decode) threads in all, on each side"
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients apart")
    parser.add_argument("--model-size", type=int, default=64, help="input size of a built bundle")
    parser.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    args = parser.parse_args()
    if args.processes < 2 or args.threads % args.processes:
        sys.exit("--processes must be at least 2 and divide --threads")
    cores = split_cores(not args.no_pin)
    per_process = args.threads // args.processes
    load_before = load_average()

    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        jpegs, jpeg_source = make_jpegs(tmp, args.jpeg_size, count=2 * args.max_batch_size)
        if args.bundle is None:
            from serve_throughput import build_bundle

            label = f"built: resnet18, {args.model_size} px, 1 epoch"
            path = build_bundle(tmp, args.model_size)
        else:
            path = resolve_version(args.bundle)
            label = str(path)
        bundle = load_bundle(path, threads=1)
        name = bundle.manifest.name
        models = repository(bundle, tmp / "repository")
        inputs = []
        for jpeg in jpegs:
            tensor = triton.InferInput("images", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([jpeg], dtype=object))
            inputs.append(tensor)

        def env(threads: int, reuse: bool) -> dict[str, str]:
            found = bench_env(args.max_batch_size, args.max_queue_delay_us, threads, threads)
            extra = {"SERVE_HTTP_PORT": "none", "SERVE_REUSE_PORT": str(reuse).lower()}
            return {**found, **extra, "SERVE_DRAIN_PRESTOP_S": "0"}  # no load left to drain at the end

        def start(threads: int, reuse: bool, port: int, k: int) -> Server:
            log = stack.enter_context((tmp / f"serve-kit-{k}.log").open("w+"))
            with cores.on_server_cores():
                server = Server(models, env(threads, reuse), log, port=port)
            stack.callback(server.stop)
            return server

        one = [start(args.threads, False, 0, 0)]
        several = [start(per_process, True, 0, 1)]
        port = int(several[0].address.rpartition(":")[2])
        several += [start(per_process, True, port, k) for k in range(2, args.processes + 1)]
        assert all(server.address == several[0].address for server in several)
        sides = {"one": one, "several": several}
        idle = {
            side: rss_mb([psutil.Process(s.process.pid) for s in servers]) for side, servers in sides.items()
        }

        windows: dict[str, list[Window]] = {side: [] for side in sides}
        answered: dict[str, list[list[float]]] = {side: [] for side in sides}
        rss: dict[str, list[float]] = {side: [] for side in sides}
        for run in range(args.runs):
            for side in ("several", "one") if run % 2 else ("one", "several"):
                window, per_server, after = timed(sides[side], name, inputs, args)
                windows[side].append(window)
                answered[side].append(per_server)
                rss[side].append(after)

        codes = [server.stop() for servers in sides.values() for server in servers]
        if any(codes):
            logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in tmp.glob("serve-kit-*.log"))
            sys.exit(f"serve-kit exited {codes} after SIGTERM:\n{logs}")

    ratios = [b.items_s / a.items_s for a, b in zip(windows["one"], windows["several"], strict=True)]
    cpu = {side: statistics.median(w.server_us_per_item for w in windows[side]) for side in sides}
    print(json.dumps({
        "bench": "processes", "bundle": label, "size": bundle.image_size, "jpegs": jpeg_source,
        "jpeg_size": args.jpeg_size, "clients": args.clients, "max_batch_size": args.max_batch_size,
        "max_queue_delay_us": args.max_queue_delay_us,
        "cores": {"server": sorted(cores.server), "client": sorted(cores.client)},
        "runs": args.runs, "seconds": args.seconds,
        "one": {"processes": 1, "inference_threads": args.threads, "decode_threads": args.threads,
                **summary(windows["one"], answered["one"], rss["one"], idle["one"])},
        "several": {"processes": args.processes, "reuse_port": True,
                    "inference_threads": per_process, "decode_threads": per_process,
                    **summary(windows["several"], answered["several"], rss["several"], idle["several"])},
        "every_process_answered": all(min(run) > 0 for run in answered["several"]),
        "ratio": {"requests_s": span(ratios, 3), "runs": [round(r, 3) for r in ratios],
                  "cpu_per_request": round(cpu["several"] / cpu["one"], 3),
                  "rss_after": round(statistics.median(rss["several"]) / statistics.median(rss["one"]), 3)},
        "load_average": {"before": load_before, "after": load_average()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
