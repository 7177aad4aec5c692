"""The server's own cost: a null model served by serve-kit, by TorchServe with our handler, and called
in-process, 1-item requests at several concurrencies.

The bench writes a bundle with the bundle writer whose network is one Linear layer on each image's
mean colour (`LinearSpec`): it answers in microseconds, so what a request costs is the server's path,
the number a GPU host lives by. Sides, each given the same parallelism (1 intra-op thread, 1 decode
thread against 1 TorchServe worker, the same batching: up to 64 items, 1 ms delay):

- `serve_kit`: `serve-kit serve` in its own process, called over gRPC (`ModelInfer`, the request
  serialized once, sent as bytes on `--channels` HTTP/2 connections: the lightest client there is);
- `torchserve`: TorchServe (Java frontend + one Python worker running our handler), JPEG bodies over
  HTTP/1.1 keep-alive (its handler takes encoded images only: no `pixels` row);
- `in_process`: the same V2 engine called in this process, no transport (`V2Engine.infer`);
- `serve_kit_shared_port` (only when asked for): `--processes` serve-kit processes listening on one
  port (`reuse_port`), each with its own copy of the model, the kernel spreading the connections;
- `grpc_echo`: the transport alone, the floor of any Python gRPC server: a `grpc.aio` server that
  answers each `ModelInfer` with the same prepared bytes (`bench/grpc_echo.py`), same client;
- `model`: the work itself, with no server: `runtime.run` + postprocessing of one item (and, for
  JPEGs, decoding and preparing it), back to back.

Server CPU per request is user + system time of the server's processes (from `/proc/<pid>/stat`) over
the timed window, divided by the requests answered in it; `overhead_us` is that minus the `model` row.
The server runs on the first half of the cores and the clients on the rest (`--no-pin`: anywhere).
Sides alternate across runs; medians and ranges. Prints one JSON line. Target: ≤ 300 µs of server
CPU beyond the model per 1-item `pixels` request.

    python bench/overhead.py [--runs 3] [--concurrency 1,16,64] [--seconds 3]
        [--sides serve_kit,torchserve,in_process] [--inputs pixels,jpeg]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import grpc
import numpy as np
import psutil
import torch

from serving.bundle import Bundle, load_bundle
from serving.bundle.export import write_bundle
from serving.bundle.networks import LinearSpec, build
from serving.bundle.pipeline import ImagePreprocess, Network, Pipeline
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.server.tensors import pack_bytes, unpack_bytes
from serving.wire import inference_pb2 as pb
from training.archive import TorchServeConfig, archive_bundle

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from load import Call, Cores, Window, drive, load_average, span, split_cores  # noqa: E402
from servers import HttpClient, Server, bench_env, make_jpegs  # noqa: E402

from tests.serving.torchserve import running_torchserve  # noqa: E402

LABELS = ("blue", "green", "red", "square")
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
SIDES = ("serve_kit", "torchserve", "in_process", "grpc_echo", "serve_kit_shared_port")
DEFAULT_SIDES = SIDES[:4]
INPUTS = ("pixels", "jpeg")
TARGET_US = 300


@dataclass
class Requests:
    """One 1-item request per kind of input, serialized once, and the answer each must get."""

    pixels: pb.ModelInferRequest
    jpeg: pb.ModelInferRequest
    jpeg_body: bytes
    labels: set[str]  # the same image either way


# --- the null bundle and its requests --------------------------------------------------------


def null_bundle(tmp: Path, jpegs: list[bytes], size: int) -> Path:
    """A multilabel bundle whose network is one Linear layer on the mean colour (seeded weights)."""
    preprocess = ImagePreprocess(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    example = np.stack([preprocess.prepare_item(jpeg).item for jpeg in jpegs[:8]])
    torch.manual_seed(0)
    spec = LinearSpec(len(LABELS))
    network = Network.from_module(spec, build(spec).eval())
    post = MultiLabelPostprocess(LABELS, (0.5,) * len(LABELS))
    pipeline = Pipeline("multilabel", preprocess, network, post)
    return write_bundle(pipeline, tmp / "models", "null", example)


def requests(bundle: Bundle, jpeg: bytes) -> Requests:
    pixels = bundle.prepare([jpeg])
    by_pixels = pb.ModelInferRequest(model_name="null")
    by_pixels.inputs.add(name="pixels", datatype="FP32", shape=list(pixels.shape))
    by_pixels.raw_input_contents.append(np.ascontiguousarray(pixels, "<f4").tobytes())
    by_jpeg = pb.ModelInferRequest(model_name="null")
    by_jpeg.inputs.add(name="images", datatype="BYTES", shape=[1])
    by_jpeg.raw_input_contents.append(pack_bytes([jpeg]))
    post = bundle.pipeline.postprocess
    outputs = bundle.runtime("onnx").run(pixels)
    expected = set(post(outputs, [(bundle.image_size, bundle.image_size)])[0]["labels"])
    return Requests(by_pixels, by_jpeg, jpeg, expected)


def answered_labels(response: pb.ModelInferResponse) -> set[str]:
    """The labels of a V2 answer's first item (its `labels` output: one BYTES element)."""
    index = [o.name for o in response.outputs].index("labels")
    (labels,) = unpack_bytes("labels", [1], response.raw_output_contents[index])
    return set(labels.decode().split())


# --- the reference: the work with no server --------------------------------------------------


def model_us(bundle: Bundle, request: Requests, seconds: float) -> dict[str, float]:
    """CPU µs per item of the work itself, per input kind, with one intra-op thread."""
    runtime, post = bundle.runtime("onnx"), bundle.pipeline.postprocess
    pixels = bundle.prepare([request.jpeg_body])
    size = [(bundle.image_size, bundle.image_size)]

    def by_pixels() -> None:
        post(runtime.run(pixels), size)

    def by_jpeg() -> None:
        post(runtime.run(bundle.prepare([request.jpeg_body])), size)

    def cpu_per_call(step: Callable[[], None]) -> float:
        for _ in range(50):
            step()
        calls, cpu, began = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - began < seconds:
            step()
            calls += 1
        return (time.process_time() - cpu) / calls * 1e6

    return {"pixels": cpu_per_call(by_pixels), "jpeg": cpu_per_call(by_jpeg)}


# --- the sides -------------------------------------------------------------------------------


@dataclass
class Setup:
    bundle_dir: Path
    models: Path
    store: Path
    tmp: Path
    env: dict[str, str]
    request: Requests
    args: argparse.Namespace
    cores: Cores


Cells = dict[tuple[str, int], Window]  # (input, concurrency) → its window


def serve_kit(
    setup: Setup, run: int, command: list[str] | None = None, name: str = "serve-kit", processes: int = 1
) -> Cells:
    """serve-kit (or, with `command`, another gRPC server printing the same line) called over gRPC;
    `processes` of them sharing one port."""
    args = setup.args

    async def measure(servers: list[Server]) -> Cells:
        channels = [grpc.aio.insecure_channel(servers[0].address) for _ in range(args.channels)]
        infer = [channel.unary_unary(MODEL_INFER) for channel in channels]
        cells: Cells = {}

        def counts() -> tuple[float, float]:
            each = [server.counts() for server in servers]
            return sum(items for items, _ in each), sum(batches for _, batches in each)

        try:
            process = [psutil.Process(server.process.pid) for server in servers]
            for kind in args.inputs:
                message = getattr(setup.request, kind)
                body = message.SerializeToString()
                answer = pb.ModelInferResponse.FromString(await infer[0](body))
                if answered_labels(answer) != setup.request.labels:
                    sys.exit(f"{name} answered {answered_labels(answer)} to {kind}, expected "
                             f"{setup.request.labels}")  # fmt: skip
                for clients in args.concurrency:

                    def caller(k: int, body: bytes = body) -> Call:
                        return lambda: infer[k % len(infer)](body)

                    calls = [caller(k) for k in range(clients)]
                    window = await drive(calls, process, args.warmup, args.seconds, counts)
                    cells[kind, clients] = window
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
        return cells

    env = setup.env if processes == 1 else {**setup.env, "SERVE_REUSE_PORT": "true"}
    with (setup.tmp / f"{name}-{run}.log").open("w+") as log:
        with setup.cores.on_server_cores():
            servers = [Server(setup.models, env, log, command=command)]
            port = int(servers[0].address.rpartition(":")[2])
            servers += [Server(setup.models, env, log, port=port) for _ in range(processes - 1)]
        try:
            cells = asyncio.run(measure(servers))
        finally:
            codes = [server.stop() for server in servers]
        if any(codes):
            sys.exit(f"{name} exited {codes} after SIGTERM:\n{servers[0].stderr()[-3000:]}")
    return cells


def serve_kit_shared_port(setup: Setup, run: int) -> Cells:
    return serve_kit(setup, run, name="serve-kit-shared-port", processes=setup.args.processes)


def grpc_echo(setup: Setup, run: int) -> Cells:
    """The transport's floor: every request answered with a prepared answer carrying the labels."""
    answer = pb.ModelInferResponse(model_name="null", model_version="1")
    labels = " ".join(sorted(setup.request.labels)).encode()
    answer.outputs.add(name="labels", datatype="BYTES", shape=[1])
    answer.raw_output_contents.append(pack_bytes([labels]))
    path = setup.tmp / "echo-answer.bin"
    path.write_bytes(answer.SerializeToString())
    command = [sys.executable, str(ROOT / "bench" / "grpc_echo.py"), str(path)]
    return serve_kit(setup, run, command, "grpc-echo")


def torchserve(setup: Setup, run: int) -> Cells:
    args, root = setup.args, setup.tmp / f"torchserve-{run}"
    if "jpeg" not in args.inputs:
        return {}

    async def measure(base: str, java: psutil.Process) -> Cells:
        cells: Cells = {}
        for clients in args.concurrency:
            posts = [HttpClient(base, "/predictions/null", setup.request.jpeg_body) for _ in range(clients)]
            try:
                first = json.loads(await posts[0].post())
                expected = setup.request.labels
                if set(first["labels"]) != expected:
                    sys.exit(f"TorchServe answered {first['labels']}, expected {expected}")
                cells["jpeg", clients] = await drive([p.post for p in posts], java, args.warmup, args.seconds)
            finally:
                await asyncio.gather(*(post.close() for post in posts))
        return cells

    with setup.cores.on_server_cores(), running_torchserve(setup.store, "null=null", root) as ts:
        java = psutil.Process(int((root / "tmp" / ".model_server.pid").read_text().split()[0]))
        os.sched_setaffinity(0, setup.cores.client)
        cells = asyncio.run(measure(ts.inference, java))
    java.wait(60)  # `--stop` only signals: the next side must not share the CPU with a dying JVM
    return cells


def in_process(setup: Setup, run: int) -> Cells:
    """The V2 engine of a server built in this process (models loaded, no port opened), called by
    coroutines on its own event loop; the CPU counted is this whole process's, on the server's cores."""
    from serving.server.app import InferenceServer  # loads models: only when measured
    from serving.server.settings import ServerSettings

    args = setup.args
    with patch.dict(os.environ, setup.env):  # the settings the served sides read from their environment
        settings = ServerSettings(models_dir=setup.models)

    async def measure() -> Cells:
        server = InferenceServer(settings)
        await server.repository.scan()
        cells: Cells = {}
        try:
            for kind in args.inputs:
                message = getattr(setup.request, kind)
                if answered_labels(await server.engine.infer(message, None)) != setup.request.labels:
                    sys.exit(f"the in-process engine answered {kind} wrongly")
                call = functools.partial(server.engine.infer, message, None)
                for clients in args.concurrency:
                    me = psutil.Process()
                    cells[kind, clients] = await drive([call] * clients, me, args.warmup, args.seconds)
        finally:
            await server.repository.close()
            server.decode_turns.pool.shutdown()
        return cells

    with setup.cores.on_server_cores():
        return asyncio.run(measure())


MEASURE = {
    "serve_kit": serve_kit,
    "torchserve": torchserve,
    "in_process": in_process,
    "grpc_echo": grpc_echo,
    "serve_kit_shared_port": serve_kit_shared_port,
}


# --- the report ------------------------------------------------------------------------------


def report(
    runs: list[dict[str, Cells]], reference: dict[str, float], args: argparse.Namespace
) -> dict[str, object]:
    rows = []
    for side in args.sides:
        for kind in args.inputs:
            for clients in args.concurrency:
                windows = [run[side][kind, clients] for run in runs if (kind, clients) in run[side]]
                if not windows:
                    continue
                cpu = [w.server_us_per_item for w in windows]
                client = [1e3 * w.per_request(w.client_cpu_ms) for w in windows]
                batches = [w.mean_batch for w in windows if w.mean_batch is not None]
                rows.append({
                    "side": side, "input": kind, "concurrency": clients,
                    "requests_s": span([w.items_s for w in windows]),
                    "server_cpu_us_per_request": span(cpu, 0),
                    "client_cpu_us_per_request": span(client, 0),
                    "overhead_us": round(statistics.median(cpu) - reference[kind]),
                    "p50_ms": round(statistics.median(w.percentile_ms(50) for w in windows), 2),
                    "p99_ms": round(statistics.median(w.percentile_ms(99) for w in windows), 2),
                    "mean_batch": round(statistics.median(batches), 1) if batches else None,
                })  # fmt: skip
    by_key = {(r["side"], r["input"], r["concurrency"]): r for r in rows}

    def median(side: str, kind: str, clients: int, field: str) -> float | None:
        row = by_key.get((side, kind, clients))
        return None if row is None else row[field]["median"]

    ratios = {}
    for clients in args.concurrency:
        for field, what in (("requests_s", "requests_s"), ("server_cpu_us_per_request", "cpu_per_request")):
            ours, theirs = (
                median("serve_kit", "jpeg", clients, field),
                median("torchserve", "jpeg", clients, field),
            )
            if ours and theirs:
                ratios[f"jpeg_c{clients}_serve_kit_vs_torchserve_{what}"] = round(ours / theirs, 3)
    pixels_overhead = [r["overhead_us"] for r in rows if r["side"] == "serve_kit" and r["input"] == "pixels"]
    worst = max(pixels_overhead) if pixels_overhead else None
    return {"rows": rows, "ratios": ratios, "serve_kit_pixels_overhead_us_worst": worst,
            "target_us": TARGET_US, "target_met": worst is not None and worst <= TARGET_US}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64", help="clients in flight, comma-separated")
    parser.add_argument("--sides", default=",".join(DEFAULT_SIDES), help=f"of {', '.join(SIDES)}")
    parser.add_argument("--processes", type=int, default=2, help="serve_kit_shared_port's processes")
    parser.add_argument("--inputs", default=",".join(INPUTS))
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections the clients share")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=1000,
        help="both servers' batching delay (TorchServe's in whole ms; at 0 it answers one call in 100 ms)",
    )
    parser.add_argument("--size", type=int, default=32, help="the null model's input size")
    parser.add_argument("--jpeg-size", type=int, default=64, help="side of the JPEG sent, in pixels")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each timed window")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed window")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients apart")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.sides, args.inputs = args.sides.split(","), args.inputs.split(",")
    for given, known, flag in ((args.sides, SIDES, "--sides"), (args.inputs, INPUTS, "--inputs")):
        if set(given) - set(known):
            sys.exit(f"{flag}: unknown {sorted(set(given) - set(known))}; choose from {list(known)}")
    cores = split_cores(not args.no_pin)
    load_before = load_average()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        jpegs, jpeg_source = make_jpegs(tmp, args.jpeg_size, count=8)
        path = null_bundle(tmp, jpegs, args.size)
        bundle = load_bundle(path, threads=1)
        request = requests(bundle, jpegs[0])
        with cores.on_server_cores():
            reference = model_us(bundle, request, args.seconds)
        archive_bundle(
            path, tmp / "store",
            TorchServeConfig(batch_size=args.max_batch_size,
                             max_batch_delay_ms=args.max_queue_delay_us // 1000, workers=1, threads=1),
            archive_format="no-archive",
        )  # fmt: skip
        env = bench_env(args.max_batch_size, args.max_queue_delay_us, 1, 1)
        env["SERVE_BATCHING__MAX_QUEUE_SIZE"] = str(max(1024, 4 * max(args.concurrency)))
        setup = Setup(path, path.parents[1], tmp / "store", tmp, env, request, args, cores)
        runs: list[dict[str, Cells]] = []
        for index in range(args.runs):
            order = args.sides[index % len(args.sides) :] + args.sides[: index % len(args.sides)]
            runs.append({side: MEASURE[side](setup, index) for side in order})

    print(json.dumps({
        "bench": "overhead", "bundle": f"LinearSpec: 1 Linear on the mean colour, {args.size} px",
        "jpegs": jpeg_source, "jpeg_size": args.jpeg_size, "jpeg_bytes": len(request.jpeg_body),
        "max_batch_size": args.max_batch_size, "max_queue_delay_us": args.max_queue_delay_us,
        "intra_op_threads": 1, "decode_threads": 1, "torchserve_workers": 1, "grpc_channels": args.channels,
        "shared_port_processes": args.processes if "serve_kit_shared_port" in args.sides else None,
        "cores": {"server": sorted(cores.server), "client": sorted(cores.client), "pinned": cores.pinned},
        "runs": args.runs, "warmup": args.warmup, "seconds": args.seconds,
        "model_cpu_us_per_item": {k: round(v) for k, v in reference.items()},
        **report(runs, reference, args),
        "load_average": {"before": load_before, "after": load_average()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
