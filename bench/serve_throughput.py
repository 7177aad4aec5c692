"""Items/s of a real `serve-kit` process under 32 concurrent clients against raw ONNX Runtime.

For each image task (multilabel tags, segmentation masks, pose points), two comparisons at the
server's `max_batch_size`, measured in the same run and alternated: prepared FP32 tensors sent to
the server (`pixels`) against `InferenceSession.run` + the bundle's postprocessing on a prepared
batch; JPEG bytes sent to the server (`images`) against decode + preprocess + run + postprocess
(masks resized back to the JPEG's size, points scaled to it) in one process, and beside it the
same done one image at a time (`jpeg_one_per_run`: the runtime without a batcher). Each client sends one
item per request, back to back, through the unmodified tritonclient (aio): gRPC, or with
`--protocol http` the V2 HTTP API (binary data, each client its own connection). Both sides get the same
parallelism: the baselines run in this process on the server's cores with its intra-op threads, and
decode a batch's JPEGs on as many threads as the server decodes with. The server and the baselines
run on the first half of the cores, the clients on the rest (`--no-pin`: anywhere). CPU µs per
item of each side, over its timed window. Several runs; medians and ranges. Prints one JSON line,
one entry per task. Target: ratio >= 0.9 for both, with p50/p99 latency of the server's requests.

    python bench/serve_throughput.py [--tasks multilabel,segmentation,pose] [--runs 3] [--seconds 5]
    python bench/serve_throughput.py --bundle models/planet --bundle models/seg
    python bench/serve_throughput.py --tasks multilabel --protocol http
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# tritonclient registers the `inference.*` protobuf messages process-wide, as serving.wire does:
# this process must never import serving.wire / v2 / server / tasks (serving.bundle is fine).
import tritonclient.grpc.aio as triton
import tritonclient.http.aio as triton_http

from serving.bundle import Bundle, load_bundle, resolve_version
from serving.bundle.pipeline import ImagePreprocess
from serving.bundle.runtimes import OnnxRuntime

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from load import Call, Cores, Window, drive, load_average, span, split_cores  # noqa: E402
from servers import FASHION_MNIST, Server, bench_env, make_jpegs, repository  # noqa: E402

DEFAULT_BUNDLES = {
    "multilabel": Path("models/planet"),
    "segmentation": Path("models/seg"),
    "pose": Path("models/pose"),
}
DEFAULT_BUNDLE = DEFAULT_BUNDLES["multilabel"]  # the other benchmarks measure the tags model


# --- the bundle and the images ---------------------------------------------------------------


def build_bundle(tmp: Path, size: int, task: str = "multilabel") -> Path:
    """A resnet18 at `size` px trained for one epoch on the task's demo set, exported like `make demo`."""
    from training.demo.pose import build_pose_set
    from training.demo.scenes import build_multilabel_scenes
    from training.demo.segmentation import build_segmentation_scenes
    from training.export import export_stage
    from training.run import run_training
    from training.tasks import config_for

    if task != "pose" and not FASHION_MNIST.is_dir():
        sys.exit(f"no {DEFAULT_BUNDLES[task]} and no {FASHION_MNIST} to build one: run `make demo`")
    data = tmp / f"data-{task}"
    if task == "segmentation":
        build_segmentation_scenes(data, n_train=128, n_valid=32, seed=0)
    elif task == "pose":
        build_pose_set(data, n_train=128, n_valid=32, seed=0)
    else:
        build_multilabel_scenes(data, n_train=256, n_valid=64, seed=0)
    run = tmp / f"run-{task}"
    cfg = config_for({
        "task": task, "data": data, "arch": "resnet18", "pretrained": False, "size": size, "bs": 32,
        "epochs": 1, "lr": 1e-3, "num_workers": 0, "out": run,
    })  # fmt: skip
    run_training(cfg)
    return export_stage(run, "stage-1", DEFAULT_BUNDLES[task].name, tmp / "exported", parity_items=32)


# --- the measurements ------------------------------------------------------------------------


ClientInput = Any  # a tritonclient InferInput, gRPC or HTTP (tritonclient has no type hints)


def client_input(protocol: str, name: str, array: np.ndarray, datatype: str) -> ClientInput:
    """One request's input as that protocol's tritonclient sends it (HTTP: as binary data)."""
    if protocol == "http":
        tensor = triton_http.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        return tensor
    grpc_tensor = triton.InferInput(name, list(array.shape), datatype)
    grpc_tensor.set_data_from_numpy(array)
    return grpc_tensor


def timed_server(
    server: Server,
    model: str,
    inputs: Sequence[ClientInput],
    args: argparse.Namespace,
) -> Window:
    """`args.clients` clients, each on its own channel (or HTTP connection) sending its own
    one-item request back to back."""
    clients, warmup, seconds = args.clients, args.warmup, args.seconds

    async def run() -> Window:
        channels = [
            triton_http.InferenceServerClient(server.http_address)
            if args.protocol == "http"
            else triton.InferenceServerClient(server.address)
            for _ in range(clients)
        ]

        def caller(k: int) -> Call:
            return lambda: channels[k].infer(model, [inputs[k % len(inputs)]])

        try:
            process = psutil.Process(server.process.pid)
            return await drive([caller(k) for k in range(clients)], process, warmup, seconds, server.counts)
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))

    return asyncio.run(run())


def timed_local(step: Callable[[int], int], warmup: float, seconds: float, cores: Cores) -> Window:
    """Items/s of `step(k)` (one batch; returns its item count) called back to back, on the
    server's cores; its CPU (this process's, threads included) counts as the server's."""
    with cores.on_server_cores():
        k, began = 0, time.perf_counter()
        while time.perf_counter() - began < warmup:
            step(k)
            k += 1
        items, cpu, began = 0, time.process_time(), time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            items += step(k)
            k += 1
        return Window(items / elapsed, [], 0.0, (time.process_time() - cpu) * 1e3, None, elapsed)


def paired_windows(
    run: int,
    server: Server,
    model: str,
    inputs: Sequence[ClientInput],
    raw: Callable[[int], int],
    args: argparse.Namespace,
) -> tuple[Window, Window]:
    """One window of the server and one of the local baseline; which goes first alternates with
    `run`, so a slow spell on the machine hurts both alike."""
    local = timed_local(raw, args.warmup, args.seconds, args.cores) if run % 2 else None
    served = timed_server(server, model, inputs, args)
    return served, local or timed_local(raw, args.warmup, args.seconds, args.cores)


def summary(server: list[Window], local: list[Window]) -> dict[str, object]:
    served = statistics.median(w.items_s for w in server)
    raw = statistics.median(w.items_s for w in local)
    batches = [w.mean_batch for w in server if w.mean_batch is not None]
    return {
        "server_items_s": round(served, 1),
        "raw_items_s": round(raw, 1),
        "ratio": round(served / raw, 3),
        "p50_ms": round(statistics.median(w.percentile_ms(50) for w in server), 2),
        "p99_ms": round(statistics.median(w.percentile_ms(99) for w in server), 2),
        "server_cpu_us_per_item": span([w.server_us_per_item for w in server], 0),
        "raw_cpu_us_per_item": span([w.server_us_per_item for w in local], 0),
        "server_mean_batch": round(statistics.median(batches), 1) if batches else None,
        "server_runs": [round(w.items_s, 1) for w in server],
        "raw_runs": [round(w.items_s, 1) for w in local],
        "run_ratios": [round(s.items_s / r.items_s, 3) for s, r in zip(server, local, strict=True)],
    }


def one_per_run(server: list[Window], unbatched: list[Window]) -> dict[str, object]:
    """The JPEG server against the raw runtime run one image at a time (decode, run, answer): what
    an in-process caller without a batcher gets. A second reference beside the batched one."""
    served = statistics.median(w.items_s for w in server)
    raw = statistics.median(w.items_s for w in unbatched)
    return {
        "raw_items_s": round(raw, 1),
        "ratio": round(served / raw, 3),
        "raw_cpu_us_per_item": span([w.server_us_per_item for w in unbatched], 0),
        "raw_runs": [round(w.items_s, 1) for w in unbatched],
    }


def measure(
    bundle: Bundle, label: str, jpegs: list[bytes], args: argparse.Namespace, tmp: Path
) -> dict[str, object]:
    """Both comparisons for one bundle, `args.runs` times alternated; a summary of each."""
    name, size = bundle.manifest.name, bundle.image_size
    bs = args.max_batch_size
    post = bundle.pipeline.postprocess

    # The baselines: one prepared batch through the session and the postprocessing; a batch of
    # JPEGs decoded, run and answered at their own size.
    runtime = bundle.runtime("onnx", cpu_graph=not args.no_cpu_graph)  # the graph the server runs
    assert isinstance(runtime, OnnxRuntime)
    session, input_name = runtime.session, runtime.input_name
    pixels = bundle.prepare(jpegs)
    batch = np.ascontiguousarray(pixels[:bs])
    network_sizes = [(size, size)] * bs
    jpeg_sizes = [(args.jpeg_size, args.jpeg_size)] * bs

    def raw_fp32(_: int) -> int:
        post(session.run(None, {input_name: batch})[0], network_sizes)
        return bs

    jpeg_batches = [jpegs[i : i + bs] for i in range(0, len(jpegs), bs)]
    preprocess = bundle.pipeline.preprocess
    assert isinstance(preprocess, ImagePreprocess)
    decoders = ThreadPoolExecutor(args.decode_threads)  # as many as the server decodes with

    def raw_jpeg(k: int) -> int:
        prepared = decoders.map(preprocess.prepare_item, jpeg_batches[k % len(jpeg_batches)])
        outputs = session.run(None, {input_name: np.stack([item for item, _ in prepared])})[0]
        post(outputs, jpeg_sizes)
        return bs

    def raw_jpeg_one(k: int) -> int:  # the runtime as a naive caller uses it: one image per run
        item, _ = preprocess.prepare_item(jpegs[k % len(jpegs)])
        post(session.run(None, {input_name: item[None]})[0], jpeg_sizes[:1])
        return 1

    # What the clients send: one item per request, each client its own image.
    protocol = args.protocol
    fp32_inputs = [client_input(protocol, "pixels", pixels[i : i + 1], "FP32") for i in range(len(jpegs))]
    jpeg_inputs = [client_input(protocol, "images", np.array([j], dtype=object), "BYTES") for j in jpegs]

    env = bench_env(bs, args.max_queue_delay_us, args.threads, args.decode_threads)
    env["SERVE_CPU_GRAPH"] = "false" if args.no_cpu_graph else "true"
    models = repository(bundle, tmp / f"repository-{name}")
    results: dict[str, tuple[list[Window], list[Window]]] = {"fp32": ([], []), "jpeg": ([], [])}
    unbatched: list[Window] = []
    kinds = (("fp32", fp32_inputs, raw_fp32), ("jpeg", jpeg_inputs, raw_jpeg))
    with (tmp / f"serve-kit-{name}.log").open("w+") as log:
        with args.cores.on_server_cores():
            server = Server(models, env, log)
        try:
            for run in range(args.runs):
                for kind, inputs, raw in kinds:
                    served, local = results[kind]
                    window = paired_windows(run, server, name, inputs, raw, args)
                    served.append(window[0])
                    local.append(window[1])
                unbatched.append(timed_local(raw_jpeg_one, args.warmup, args.seconds, args.cores))
        finally:
            code = server.stop()
            decoders.shutdown()
        if code != 0:
            sys.exit(f"serve-kit exited {code} after SIGTERM:\n{server.stderr()[-3000:]}")
    return {
        "bundle": label, "size": size, "labels": len(bundle.manifest.labels),
        "fp32": summary(*results["fp32"]), "jpeg": summary(*results["jpeg"]),
        "jpeg_one_per_run": one_per_run(results["jpeg"][0], unbatched),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, action="append", help="models/<name>[/<version>]; repeat for several"
    )
    parser.add_argument(
        "--tasks", default=",".join(DEFAULT_BUNDLES), help="without --bundle: the tasks to measure"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument(
        "--threads", type=int, help="intra-op threads, server and baseline (default: its cores)"
    )
    parser.add_argument(
        "--decode-threads", type=int, help="JPEG decode threads, server and baseline (default: --threads)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients apart")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc", help="the clients' V2 API")
    parser.add_argument(
        "--model-size", type=int, default=64, help="input size of the bundles built without --bundle"
    )
    parser.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each timed window")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed window")
    parser.add_argument(
        "--no-cpu-graph",
        action="store_true",
        help="both sides run model.onnx, not the bundle's model.cpu.onnx (SERVE_CPU_GRAPH=false)",
    )
    args = parser.parse_args()
    unknown = set(args.tasks.split(",")) - set(DEFAULT_BUNDLES)
    if unknown:
        sys.exit(f"--tasks: unknown {sorted(unknown)}; choose from {list(DEFAULT_BUNDLES)}")
    args.cores = split_cores(not args.no_pin)
    args.threads = args.threads or len(args.cores.server)
    args.decode_threads = args.decode_threads or args.threads
    load_before = load_average()

    tasks: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        jpegs, jpeg_source = make_jpegs(tmp, args.jpeg_size, count=2 * args.max_batch_size)
        chosen: list[tuple[Path | None, str]] = [(path, "") for path in args.bundle or []]
        if not chosen:
            for task in args.tasks.split(","):
                default = DEFAULT_BUNDLES[task]
                chosen.append((default if default.is_dir() else None, task))
        for path, task in chosen:
            if path is None:
                label = f"built: resnet18, {args.model_size} px, 1 epoch"
                bundle = load_bundle(build_bundle(tmp, args.model_size, task), threads=args.threads)
            else:
                label, bundle = str(resolve_version(path)), load_bundle(path, threads=args.threads)
            tasks[bundle.manifest.task] = measure(bundle, label, jpegs, args, tmp)
            graph = bundle.runtime("onnx", cpu_graph=not args.no_cpu_graph).describe()
            tasks[bundle.manifest.task]["graph"] = graph  # type: ignore[index]

    print(json.dumps({
        "bench": "serve_throughput", "protocol": args.protocol, "jpegs": jpeg_source,
        "jpeg_size": args.jpeg_size,
        "jpeg_bytes_mean": round(statistics.mean(map(len, jpegs))),
        "clients": args.clients, "max_batch_size": args.max_batch_size,
        "max_queue_delay_us": args.max_queue_delay_us, "intra_op_threads": args.threads,
        "decode_threads": args.decode_threads,
        "cores": {"server": sorted(args.cores.server), "client": sorted(args.cores.client)},
        "runs": args.runs, "seconds": args.seconds, "tasks": tasks, "target": 0.9,
        "load_average": {"before": load_before, "after": load_average()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
