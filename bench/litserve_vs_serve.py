"""Requests/s, latency, CPU and memory of serve-kit's HTTP front end against LitServe, same bundle.

The comparison the lean-serving issue asks for: is serve-kit's HTTP path as cheap as a popular Python
serving framework doing the same work? Both serve the same bundle through the same ONNX graph (what
`bundle.runtime("onnx")` picks on a CPU: `model.cpu.onnx` where the bundle has one; checked on both
sides, named in the output) and the same preprocessing (`ImagePreprocess.prepare_item` on the JPEG's
bytes) and postprocessing, with the same batching (batches of up to `--max-batch-size` items or
`--max-queue-delay-us`: LitServe's `max_batch_size` and `batch_timeout`), the same cores (the first
half; the clients the rest; `--no-pin`: anywhere) and the same parallelism: `--threads` intra-op
threads each, and one thread decoding (serve-kit's decode threads = 1; LitServe decodes in its one
inference worker, between batches). LitServe runs as it ships: one uvicorn API process (uvloop,
httptools), one inference worker process, its manager process for the queues (`--fast-queue`: ZMQ
answers), no access log (serve-kit keeps none either); its CPU and memory count its whole process tree.

Each request carries one JPEG, the cheapest way a real client sends one to each server:
serve-kit: `POST /v2/models/<name>/infer` with the V2 binary-data extension (a JSON header naming a
BYTES `images` tensor, then the JPEG's bytes, 4-byte length first; its HTTP port has no typed task
route), answered in V2 JSON (`scores`, `labels`); LitServe: `POST /predict` with `{"image": base64}`
(its request path reads JSON or a form; base64 JSON is its own image example), answered with the
bundle's JSON answer (`labels`, `scores`) as TorchServe's handler gives it. The same client for both:
raw HTTP/1.1 keep-alive over asyncio streams, each client on its own connection sending its own image
back to back; every answer is checked (200, labels parse), and before the clock runs each server
answers every image once: both must give each image the same labels, or the bench fails.

One server at a time: each run starts one, checks it, measures every `--clients` count in turn (a
warm-up and a timed window each), and stops it, then the other; the order alternates across runs.
Reported per concurrency: requests/s of each, the ratio serve-kit / LitServe (median and range of
the runs' ratios), p50/p99, server CPU ms per request (user + system over the window, the whole
process tree); per server: resident memory of its tree, idle after the check answers and after the
load; the load average. Prints one JSON line.

    python bench/litserve_vs_serve.py [--runs 3] [--seconds 5] [--clients 1,8,32] [--bundle models/planet]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import litserve as ls
import numpy as np
import psutil

from serving.bundle import Bundle, load_bundle, resolve_version
from serving.bundle.flow import Prepared, Size, answer
from serving.bundle.pipeline import ImagePreprocess

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]
from load import Window, drive, load_average, span, split_cores  # noqa: E402
from servers import (  # noqa: E402
    HEADER_LENGTH,
    HttpClient,
    Server,
    bench_env,
    make_jpegs,
    repository,
    v2_images_body,
)

GRAPH_LINE = "litserve graph: "  # what the LitServe worker prints once its runtime is loaded
BATCH_LINE = re.compile(r"^litserve batch: (\d+)$", re.MULTILINE)  # one line per batch, as TorchServe's
# serve_throughput's default, not imported from it: that module imports tritonclient, which LitServe's
# processes (they import this file) should not carry; it is imported only to build a bundle
DEFAULT_BUNDLE = Path("models/planet")


# --- LitServe's side -------------------------------------------------------------------------


class BundleAPI(ls.LitAPI):
    """The bundle served as serve-kit serves it: its preprocessing, its ONNX runtime (the same graph
    and intra-op threads), its postprocessing and JSON answer (TorchServe's handler gives the same)."""

    def __init__(self, bundle_path: str, threads: int, max_batch_size: int, batch_timeout_s: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.bundle_path, self.threads = bundle_path, threads

    def setup(self, device: str) -> None:
        self.bundle = load_bundle(Path(self.bundle_path), threads=self.threads)
        self.runtime = self.bundle.runtime("onnx")  # on the CPU: model.cpu.onnx where there is one
        preprocess = self.bundle.pipeline.preprocess
        assert isinstance(preprocess, ImagePreprocess), "an image bundle"
        self.preprocess = preprocess
        self.runtime.run(preprocess.warm_up_batch())  # as serve-kit warms a model before serving
        print(f"{GRAPH_LINE}{self.runtime.describe()}", file=sys.stderr, flush=True)

    # No annotation on `request`: LitServe takes one as the request's type; without, it reads JSON (a dict).
    def decode_request(self, request) -> Prepared:  # type: ignore[no-untyped-def]
        return self.preprocess.prepare_item(base64.b64decode(request["image"]))

    def batch(self, inputs: list[Prepared]) -> tuple[np.ndarray, list[Size]]:
        print(f"litserve batch: {len(inputs)}", file=sys.stderr, flush=True)  # the bench counts them
        return self.preprocess.batch([p.item for p in inputs]), [p.size for p in inputs]

    def predict(self, x: tuple[np.ndarray, list[Size]]) -> tuple[np.ndarray, list[Size]]:
        items, sizes = x
        return self.runtime.run(items), sizes

    def unbatch(self, output: tuple[np.ndarray, list[Size]]) -> list[dict[str, Any]]:
        return answer(self.bundle.pipeline, *output)

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return self.bundle.task.json_answer(self.bundle.manifest, output)


def litserve_worker(args: argparse.Namespace) -> None:
    """`--litserve-worker`: run LitServer on 127.0.0.1:`--port` until SIGINT (a clean shutdown)."""
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it so: LitServe shuts
    # down cleanly on KeyboardInterrupt only.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    api = BundleAPI(str(args.bundle), args.threads, args.max_batch_size, args.max_queue_delay_us / 1e6)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, fast_queue=args.fast_queue)
    server.run(
        host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False
    )


def free_port() -> int:
    """A port free on 127.0.0.1 now (LitServe takes no port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LitServeProcess:
    """LitServe in a process of its own (its own session), on the current cores; ready once /health
    answers 200. Stopped with SIGINT, LitServe's clean shutdown; whatever of its tree outlives that
    is killed by pid."""

    def __init__(self, bundle: Path, args: argparse.Namespace, log: IO[str], cwd: Path) -> None:
        self.port = free_port()
        self.log = log
        command = [sys.executable, str(Path(__file__).resolve()), "--litserve-worker",
                   "--bundle", str(bundle), "--port", str(self.port), "--threads", str(args.threads),
                   "--max-batch-size", str(args.max_batch_size),
                   "--max-queue-delay-us", str(args.max_queue_delay_us)]  # fmt: skip
        if args.fast_queue:
            command.append("--fast-queue")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
        self.address = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://{self.address}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        sys.exit(f"LitServe did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def counts(self) -> tuple[float, float]:
        """(items, batches) run so far, from the worker's batch lines."""
        sizes = [int(n) for n in BATCH_LINE.findall(self.output())]
        return float(sum(sizes)), float(len(sizes))

    def stop(self) -> int:
        tree = [psutil.Process(self.process.pid)]
        try:
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for each in alive:  # LitServe's own children that its shutdown left behind
            each.kill()
        psutil.wait_procs(alive, timeout=10)
        return self.process.returncode


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """How a client asks one server for one JPEG's labels (path, headers and body), and reads them."""

    name: str
    path: str
    request: Callable[[bytes], tuple[dict[str, str], bytes]]
    labels: Callable[[Any], set[str]]
    scores: Callable[[Any], np.ndarray]

    def client(self, address: str, jpeg: bytes) -> HttpClient:
        headers, body = self.request(jpeg)
        return HttpClient(address, self.path, body, headers)

    async def answer(self, client: HttpClient) -> Any:
        """One request's answer as JSON; it must hold labels."""
        found = json.loads(await client.post())
        self.labels(found)  # raises where the answer holds no labels
        return found


def serve_kit_side(model: str) -> Side:
    """V2 HTTP infer, the JPEG as binary data after a JSON header (Triton's binary-data extension)."""

    def request(jpeg: bytes) -> tuple[dict[str, str], bytes]:
        body, header_length = v2_images_body([jpeg])
        return {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header_length)}, body

    def outputs(found: Any) -> dict[str, list[Any]]:
        return {output["name"]: output["data"] for output in found["outputs"]}

    def read_labels(found: Any) -> set[str]:
        text = outputs(found)["labels"][0]
        assert isinstance(text, str), found
        return set(text.split())

    return Side(
        "serve_kit",
        f"/v2/models/{model}/infer",
        request,
        read_labels,
        lambda found: np.asarray(outputs(found)["scores"], np.float64),
    )


def litserve_side(labels: Sequence[str]) -> Side:
    """LitServe's /predict with the JPEG as base64 in JSON."""

    def request(jpeg: bytes) -> tuple[dict[str, str], bytes]:
        body = json.dumps({"image": base64.b64encode(jpeg).decode("ascii")}).encode()
        return {"Content-Type": "application/json"}, body

    def read_labels(found: Any) -> set[str]:
        assert isinstance(found["labels"], list), found
        return set(found["labels"])

    return Side(
        "litserve",
        "/predict",
        request,
        read_labels,
        lambda found: np.array([found["scores"][label] for label in labels], np.float64),
    )


# --- the measurements ------------------------------------------------------------------------


def memory_mb(process: psutil.Process) -> tuple[float, float]:
    """Resident memory of a process and its live descendants, summed, in MiB: RSS (pages a forked
    child shares with its parent counted in each) and PSS (shared pages split between them)."""
    rss = pss = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            info = each.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss / (1 << 20), pss / (1 << 20)


@dataclass
class Session:
    """One server's turn in one run: its answers for every image, a window per concurrency, memory."""

    answers: list[tuple[set[str], np.ndarray]] = field(default_factory=list)
    windows: dict[int, Window] = field(default_factory=dict)
    idle_mb: tuple[float, float] = (0.0, 0.0)  # (RSS, PSS) after the check answers
    after_mb: tuple[float, float] = (0.0, 0.0)  # after the last window
    processes: int = 0


def measure(
    side: Side,
    address: str,
    process: psutil.Process,
    jpegs: list[bytes],
    args: argparse.Namespace,
    batches: Callable[[], tuple[float, float]],
) -> Session:
    """Every image answered once (in order), then each concurrency's warm-up and timed window."""
    session = Session()

    async def run() -> None:
        first = side.client(address, jpegs[0])
        try:
            for jpeg in jpegs:  # one connection, each image's request in turn
                first.request = side.client(address, jpeg).request
                found = await side.answer(first)
                session.answers.append((side.labels(found), side.scores(found)))
        finally:
            await first.close()
        await asyncio.sleep(0.2)
        session.idle_mb = await asyncio.to_thread(memory_mb, process)
        session.processes = 1 + len(process.children(recursive=True))
        for count in args.clients:
            clients = [side.client(address, jpegs[k % len(jpegs)]) for k in range(count)]
            try:
                calls = [functools.partial(side.answer, c) for c in clients]
                session.windows[count] = await drive(calls, process, args.warmup, args.seconds, batches)
            finally:
                await asyncio.gather(*(c.close() for c in clients))
        session.after_mb = await asyncio.to_thread(memory_mb, process)

    asyncio.run(run())
    return session


def run_serve_kit(
    side: Side, models: Path, env: dict[str, str], jpegs: list[bytes], args: argparse.Namespace, tmp: Path
) -> tuple[Session, str]:
    with (tmp / "serve-kit.log").open("w+") as log:
        with args.cores.on_server_cores():
            server = Server(models, env, log)
        try:
            assert server.http_address is not None, "serve-kit's HTTP port is off"
            model = side.path.split("/")[3]
            url = f"http://{server.http_address}/v2/models/{model}/config"
            with urllib.request.urlopen(url, timeout=10) as response:
                graph = json.loads(response.read())["parameters"]["runtime"]["string_value"]
            process = psutil.Process(server.process.pid)
            session = measure(side, server.http_address, process, jpegs, args, server.counts)
        finally:
            code = server.stop()
        if code != 0:
            sys.exit(f"serve-kit exited {code} after SIGTERM:\n{server.stderr()[-3000:]}")
    return session, graph


def run_litserve(
    side: Side, bundle: Path, jpegs: list[bytes], args: argparse.Namespace, tmp: Path
) -> tuple[Session, str]:
    with (tmp / "litserve.log").open("w+") as log:
        with args.cores.on_server_cores():
            server = LitServeProcess(bundle, args, log, tmp)
        try:
            graph = next(
                line.partition(GRAPH_LINE)[2] for line in server.output().splitlines() if GRAPH_LINE in line
            )
            process = psutil.Process(server.process.pid)
            session = measure(side, server.address, process, jpegs, args, server.counts)
        finally:
            server.stop()
    return session, graph


# --- the report ------------------------------------------------------------------------------


def side_summary(windows: list[Window]) -> dict[str, object]:
    batches = [w.mean_batch for w in windows if w.mean_batch is not None]
    return {
        "requests_s": span([w.items_s for w in windows]),
        "p50_ms": span([w.percentile_ms(50) for w in windows], 2),
        "p99_ms": span([w.percentile_ms(99) for w in windows], 2),
        "server_cpu_ms_per_request": span([w.server_us_per_item / 1e3 for w in windows], 3),
        "client_cpu_ms_per_request": span([w.per_request(w.client_cpu_ms) for w in windows], 3),
        "mean_batch": round(statistics.median(batches), 1) if batches else None,
        "runs": [round(w.items_s, 1) for w in windows],
    }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, help=f"models/<name>[/<version>] (default: {DEFAULT_BUNDLE})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--max-batch-size", type=int, default=32, help="both servers' batch size")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, help="both servers' batching delay")
    parser.add_argument("--threads", type=int, help="intra-op threads of both (default: the server's cores)")
    parser.add_argument("--fast-queue", action="store_true", help="LitServe's ZMQ answers (fast_queue)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients apart")
    parser.add_argument("--model-size", type=int, default=64, help="input size of a bundle built here")
    parser.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each timed window")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed window")
    parser.add_argument("--litserve-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    if args.litserve_worker:
        litserve_worker(args)
        return
    args.clients = [int(n) for n in args.clients.split(",")]
    args.cores = split_cores(not args.no_pin)
    args.threads = args.threads or len(args.cores.server)
    load_before = load_average()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = args.bundle or (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None)
        label = str(resolve_version(path)) if path else f"built: resnet18, {args.model_size} px, 1 epoch"
        if path is None:
            from serve_throughput import build_bundle

            path = build_bundle(tmp, args.model_size)
        path = resolve_version(path)
        bundle: Bundle = load_bundle(path, threads=args.threads)
        name, labels = bundle.manifest.name, bundle.manifest.labels
        graph = bundle.runtime("onnx").describe()
        jpegs, jpeg_source = make_jpegs(tmp, args.jpeg_size, count=max(args.clients))
        env = bench_env(args.max_batch_size, args.max_queue_delay_us, args.threads, 1)
        models = repository(bundle, tmp / "repository")
        sides = {"serve_kit": serve_kit_side(name), "litserve": litserve_side(labels)}

        sessions: dict[str, list[Session]] = {side: [] for side in sides}
        graphs: dict[str, set[str]] = {side: set() for side in sides}
        scores_diff = 0.0
        for run in range(args.runs):
            order = ["serve_kit", "litserve"] if run % 2 == 0 else ["litserve", "serve_kit"]
            for side in order:
                if side == "serve_kit":
                    session, found = run_serve_kit(sides[side], models, env, jpegs, args, tmp)
                else:
                    session, found = run_litserve(sides[side], path, jpegs, args, tmp)
                sessions[side].append(session)
                graphs[side].add(found)
            checked = zip(sessions["serve_kit"][-1].answers, sessions["litserve"][-1].answers, strict=True)
            for index, ((a, a_scores), (b, b_scores)) in enumerate(checked):
                if a != b:
                    sys.exit(f"run {run}, image {index}: serve-kit {sorted(a)}, LitServe {sorted(b)}")
                scores_diff = max(scores_diff, float(np.max(np.abs(a_scores - b_scores))))
        if graphs["serve_kit"] != {graph} or graphs["litserve"] != {graph}:
            sys.exit(f"not the same graph: bundle {graph!r}, served {graphs}")

    concurrency: dict[str, object] = {}
    for count in args.clients:
        ours = [s.windows[count] for s in sessions["serve_kit"]]
        theirs = [s.windows[count] for s in sessions["litserve"]]
        # a window where LitServe answered nothing (it stalls now and then here) has no ratio
        ratios = [a.items_s / b.items_s if b.items_s else None for a, b in zip(ours, theirs, strict=True)]
        finite = [r for r in ratios if r is not None]
        concurrency[str(count)] = {
            "serve_kit": side_summary(ours),
            "litserve": side_summary(theirs),
            "ratio_requests_s": span(finite, 3) if finite else None,
            "run_ratios": [None if r is None else round(r, 3) for r in ratios],
            "ratio_cpu_per_request": round(
                statistics.median(w.server_us_per_item for w in ours)
                / statistics.median(w.server_us_per_item for w in theirs),
                3,
            ),
        }
    memory = {
        side: {
            "processes": max(s.processes for s in sessions[side]),
            "rss_mb_idle": span([s.idle_mb[0] for s in sessions[side]]),
            "rss_mb_after_load": span([s.after_mb[0] for s in sessions[side]]),
            "pss_mb_idle": span([s.idle_mb[1] for s in sessions[side]]),
            "pss_mb_after_load": span([s.after_mb[1] for s in sessions[side]]),
        }
        for side in sides
    }
    print(json.dumps({
        "bench": "litserve_vs_serve", "litserve": ls.__version__,
        "bundle": label, "size": bundle.image_size, "labels": len(labels), "graph": graph,
        "jpegs": jpeg_source, "jpeg_size": args.jpeg_size,
        "jpeg_bytes_mean": round(statistics.mean(map(len, jpegs))),
        "routes": {"serve_kit": f"POST /v2/models/{name}/infer, V2 binary data, JSON answer",
                   "litserve": "POST /predict, JSON with base64 image"},
        "http_client": "asyncio streams, HTTP/1.1 keep-alive, one connection per client",
        "clients": args.clients, "max_batch_size": args.max_batch_size,
        "max_queue_delay_us": args.max_queue_delay_us, "intra_op_threads": args.threads,
        "decode_threads": 1, "litserve_workers": 1, "litserve_api_servers": 1,
        "litserve_fast_queue": args.fast_queue,
        "cores": {"server": sorted(args.cores.server), "client": sorted(args.cores.client)},
        "runs": args.runs, "warmup": args.warmup, "seconds": args.seconds,
        "labels_match": True, "images_checked": len(jpegs), "scores_max_diff": scores_diff,
        "concurrency": concurrency, "memory": memory,
        "load_average": {"before": load_before, "after": load_average()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
