"""Soak: many requests at high concurrency, mixed models, a share of them hostile; nothing lost.

A real `serve-kit` serves the bundle under two names, and a tiny text model. Clients (tritonclient.aio)
send valid requests (1–4 JPEGs, or a prepared FP32 tensor) and hostile ones (corrupt, truncated, a
60,000² PNG bomb, wrong datatype or shape, unknown model / version / output, more items than the queue
holds, a `classification` count on an output without classes, texts over 1 MiB as V2 bytes and as a
typed `Sentiment` str), in a seeded random order. Halfway, a version folder is copied as an operator
stages one (`cp -r planet/1 planet/2`: its manifest still says version 1); it must be refused once,
never reloaded, while version 1 serves on. At the end, SIGTERM arrives under full load: every call
started before it must be answered OK, and the server must exit 0.

Every valid answer must equal `load_bundle(...).predict` on the same input; every hostile one must get
its own status code; the server must not crash; its resident memory must grow < 10 % between the
second and the last tenth of the requests (thousands, at 10,000). Prints one JSON line whose "ok"
says whether all of that held (exit status 1 when not).

    python bench/soak.py [--requests 10000] [--concurrency 64] [--hostile 0.05] [--bundle models/planet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# This process must never import serving.wire / v2 / server / tasks (tritonclient clashes with them).
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # serve_throughput's helpers; the tests' payloads
import grpc  # noqa: E402
from serve_throughput import DEFAULT_BUNDLE, build_bundle  # noqa: E402
from servers import Server, make_jpegs  # noqa: E402

from serving.bundle import Bundle, load_bundle  # noqa: E402
from serving.bundle.text_preprocess import MAX_TEXT_BYTES  # noqa: E402
from serving.wire import tasks_pb2  # noqa: E402  # the typed API's stubs do not clash with tritonclient's
from serving.wire.tasks_pb2_grpc import TasksStub  # noqa: E402
from tests.serving.bundles import write_reviews  # noqa: E402
from tests.serving.payloads import declared_png, images_input  # noqa: E402

MODELS = ("planet", "planet_b")
TEXT_MODEL = "reviews"


@dataclass
class Plan:
    """One request: what to send, and what must come back."""

    kind: str
    model: str
    inputs: list[triton.InferInput]
    code: str = "OK"
    version: str = ""
    outputs: list[str] = field(default_factory=list)
    class_count: int = 0
    typed_text: str | None = None  # a typed Sentiment call instead of V2
    labels: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None


def array_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def hostile_plans(jpegs: list[bytes], size: int) -> list[Callable[[str], Plan]]:
    bad = "INVALID_ARGUMENT"
    good = jpegs[0]
    return [
        lambda m: Plan("corrupt image", m, [images_input([b"\x89PNG not really"])], bad),
        lambda m: Plan("truncated jpeg", m, [images_input([good[: len(good) // 2]])], bad),
        lambda m: Plan("60000x60000 bomb", m, [images_input([declared_png(60_000, 60_000)])], bad),
        lambda m: Plan("fp64 pixels", m, [array_input("pixels", np.zeros((1, 3, size, size)), "FP64")], bad),
        lambda m: Plan(
            "wrong shape", m, [array_input("pixels", np.zeros((1, 3, 7, 7), np.float32), "FP32")], bad
        ),
        lambda m: Plan("unknown model", "no-such-model", [images_input([good])], "NOT_FOUND"),
        lambda m: Plan("unknown version", m, [images_input([good])], "NOT_FOUND", version="999"),
        lambda m: Plan("unknown output", m, [images_input([good])], bad, outputs=["nope"]),
        lambda m: Plan("too many items", m, [images_input([b""] * 5000)], bad),
        lambda m: Plan(
            "class_count of labels", m, [images_input([good])], bad, outputs=["labels"], class_count=2
        ),
        lambda m: Plan("2 MiB V2 text", TEXT_MODEL, [bytes_input([b"x" * (2 * MAX_TEXT_BYTES)])], bad),
        lambda m: Plan("2 MiB typed str", TEXT_MODEL, [], bad, typed_text="ü" * MAX_TEXT_BYTES),
    ]


def bytes_input(elements: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("texts", [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=object))
    return tensor


def valid_plan(rng: random.Random, model: str, jpegs: list[bytes], expected: list[dict[str, object]],
               bundle: Bundle, pixels: np.ndarray) -> Plan:  # fmt: skip
    picks = [rng.randrange(len(jpegs)) for _ in range(rng.randint(1, 4))]
    labels = [" ".join(expected[i]["labels"]) for i in picks]  # type: ignore[arg-type]
    names = bundle.manifest.labels
    scores = np.array([[expected[i]["scores"][n] for n in names] for i in picks], np.float32)  # type: ignore[index]
    if rng.random() < 0.25:
        return Plan(
            "fp32", model, [array_input("pixels", pixels[picks], "FP32")], labels=labels, scores=scores
        )
    return Plan("jpeg", model, [images_input([jpegs[i] for i in picks])], labels=labels, scores=scores)


@dataclass
class Outcome:
    codes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, valid requests answered OK
    rss: list[float] = field(default_factory=list)  # MB, after each tenth of the requests


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sentiment_code(address: str, text: str) -> str:
    """The status code of a typed Sentiment call for `text` ("OK" when answered)."""
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        request = tasks_pb2.SentimentRequest(model=tasks_pb2.ModelRef(name=TEXT_MODEL), texts=[text])
        try:
            await TasksStub(channel).Sentiment(request, timeout=120)
        except grpc.aio.AioRpcError as err:
            return str(err.code().name)
        return "OK"


async def run(
    address: str, plans: list[Plan], concurrency: int, pid: int, halfway: Callable[[], None]
) -> Outcome:
    """Send every plan; the server's RSS after each tenth of them (each thousand of 10,000); `halfway`
    runs once, when half of them are done."""
    every = max(1, len(plans) // 10)
    outcome = Outcome()
    codes, unexpected, latencies, rss = outcome.codes, outcome.unexpected, outcome.latencies, outcome.rss
    done = 0
    queue: asyncio.Queue[Plan] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)

    async def worker() -> None:
        nonlocal done
        client = triton.InferenceServerClient(address)
        try:
            while not queue.empty():
                plan = queue.get_nowait()
                outputs = [triton.InferRequestedOutput(n, class_count=plan.class_count) for n in plan.outputs]
                began = time.perf_counter()
                result = None
                try:
                    if plan.typed_text is not None:
                        code = await sentiment_code(address, plan.typed_text)
                    else:
                        result = await client.infer(
                            plan.model,
                            plan.inputs,
                            model_version=plan.version,
                            outputs=outputs or None,
                            client_timeout=120,
                        )
                        code = "OK"
                except InferenceServerException as err:
                    code = str(err.status()).removeprefix("StatusCode.")
                codes[code] += 1
                if code != plan.code:
                    unexpected.append(f"{plan.kind}: expected {plan.code}, got {code}")
                elif result is not None and plan.scores is not None:
                    latencies.append(time.perf_counter() - began)
                    got_labels = [b.decode() for b in result.as_numpy("labels")]
                    if got_labels != plan.labels or not np.allclose(
                        result.as_numpy("scores"), plan.scores, atol=1e-4
                    ):
                        unexpected.append(f"{plan.kind}: answer differs from load_bundle(...).predict")
                done += 1
                if done == len(plans) // 2:
                    halfway()
                if done % every == 0:
                    rss.append(rss_mb(pid))
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcome


async def drain_under_load(server: Server, concurrency: int, plan: Plan) -> tuple[Counter[str], Counter[str]]:
    """SIGTERM while `concurrency` clients send `plan` back to back; the outcomes of the calls started
    before the signal, and of those started after it (each client stops at its first refusal)."""
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    signalled: float | None = None

    async def client_loop() -> None:
        client = triton.InferenceServerClient(server.address)
        try:
            while True:
                started = time.monotonic()
                try:
                    await client.infer(plan.model, plan.inputs, client_timeout=60)
                    code = "OK"
                except InferenceServerException as err:
                    code = str(err.status()).removeprefix("StatusCode.")
                (before if signalled is None or started < signalled else after)[code] += 1
                if code != "OK" and signalled is not None:
                    return
        finally:
            await client.close()

    clients = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
    await asyncio.sleep(1.0)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*clients), 120)
    return before, after


async def model_ready(address: str, name: str, version: str) -> bool:
    client = triton.InferenceServerClient(address)
    try:
        return bool(await client.is_model_ready(name, version))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hostile", type=float, default=0.05, help="share of hostile requests")
    parser.add_argument("--bundle", type=Path, help=f"models/<name>[/<version>] (default: {DEFAULT_BUNDLE})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = args.bundle or (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None)
        bundle = load_bundle(path or build_bundle(tmp, 64))
        jpegs, _ = make_jpegs(tmp, 96, count=32)
        expected = bundle.predict(jpegs)
        pixels = bundle.prepare(jpegs)
        size = bundle.image_size

        rng = random.Random(args.seed)
        hostile = hostile_plans(jpegs, size)
        plans = [
            rng.choice(hostile)(rng.choice(MODELS))
            if rng.random() < args.hostile
            else valid_plan(rng, rng.choice(MODELS), jpegs, expected, bundle, pixels)
            for _ in range(args.requests)
        ]

        models = tmp / "models"
        write_reviews(models, name=TEXT_MODEL)
        for name in MODELS:  # one bundle under two names: the manifest's name must match the folder
            target = models / name / str(bundle.manifest.version)
            target.mkdir(parents=True)
            for file in bundle.path.iterdir():
                (target / file.name).write_bytes(file.read_bytes())
            manifest = json.loads((target / "manifest.json").read_text())
            manifest["name"] = name
            (target / "manifest.json").write_text(json.dumps(manifest))

        env = {"SERVE_METRICS_PORT": "0", "SERVE_HTTP_PORT": "0", "SERVE_POLL_INTERVAL_S": "0.5"}
        env["SERVE_LOG_FORMAT"] = "json"
        env["SERVE_DRAIN_PRESTOP_S"] = "2"
        served = models / MODELS[0] / str(bundle.manifest.version)
        staged = served.parent / str(bundle.manifest.version + 1)

        def stage_a_copy() -> None:  # what an operator does; the manifest inside still names version 1
            shutil.copytree(served, staged)

        with (tmp / "server.log").open("w") as log:
            server = Server(models, env, log)
            began = time.perf_counter()
            outcome = asyncio.run(
                run(server.address, plans, args.concurrency, server.process.pid, stage_a_copy)
            )
            elapsed = time.perf_counter() - began
            # cp -r is not atomic: a poll may meet the copy half written (a failed load), then the
            # finished copy (refused for its manifest). After that, nothing may be tried again.
            failure = f'"message": "model failed to load", "model": "{MODELS[0]}"'
            time.sleep(1.0)
            failed_loads = server.stderr().count(failure)
            time.sleep(2.0)  # four more polls
            retried = server.stderr().count(failure) - failed_loads
            copy_refused = not asyncio.run(model_ready(server.address, MODELS[0], staged.name))
            still_serving = asyncio.run(model_ready(server.address, MODELS[0], served.name))
            crashed = server.process.poll() is not None
            last = valid_plan(rng, MODELS[0], jpegs, expected, bundle, pixels)
            before, after = Counter[str](), Counter[str]()
            if not crashed:
                before, after = asyncio.run(drain_under_load(server, args.concurrency, last))
            try:
                exit_code = server.process.wait(60)
            except subprocess.TimeoutExpired:
                exit_code = server.stop()

    rss, unexpected, latencies = outcome.rss, outcome.unexpected, sorted(outcome.latencies)
    growth = (rss[-1] - rss[1]) / rss[1] if len(rss) >= 3 else 0.0
    hostile_sent = sum(1 for p in plans if p.code != "OK")
    drain_ok = set(before) == {"OK"} and set(after) <= {"OK", "UNAVAILABLE", "CANCELLED"}
    staged_ok = copy_refused and still_serving and 1 <= failed_loads <= 2 and retried == 0
    ok = not crashed and exit_code == 0 and not unexpected and growth < 0.10 and drain_ok and staged_ok
    print(
        json.dumps(
            {
                "bench": "soak",
                "requests": args.requests,
                "concurrency": args.concurrency,
                "hostile": hostile_sent,
                "hostile_share": round(hostile_sent / args.requests, 4),
                "codes": dict(outcome.codes),
                "unexpected": len(unexpected),
                "unexpected_examples": unexpected[:5],
                "crashed": crashed,
                "exit_code": exit_code,
                "copied_version": {
                    "refused": copy_refused,
                    "v1_serving": still_serving,
                    "failed_loads": failed_loads,
                    "retried_after": retried,
                },
                "sigterm": {"started_before": dict(before), "started_after": dict(after)},
                "rss_mb": [round(r, 1) for r in rss],
                "rss_growth_2nd_to_last": round(growth, 4),
                "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
                "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
                "requests_s": round(args.requests / elapsed, 1),
                "ok": ok,
            }
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
