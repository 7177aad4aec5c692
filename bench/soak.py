"""Soak: many requests at high concurrency, mixed models, a share of them hostile; nothing lost.

A real `serve-kit` serves the bundle under two names. Clients (tritonclient.aio) send valid requests
(1–4 JPEGs, or a prepared FP32 tensor) and hostile ones (corrupt, truncated, a 60,000² PNG bomb,
wrong datatype or shape, unknown model / version / output, more items than the queue holds), in a
seeded random order. Every valid answer must equal `load_bundle(...).predict` on the same input;
every hostile one must get its own status code; the server must not crash; its resident memory
must grow < 10 % between the second and the last tenth of the requests (thousands, at 10,000).
Prints one JSON line whose "ok" says whether all of that held (exit status 1 when not).

    python bench/soak.py [--requests 10000] [--concurrency 64] [--hostile 0.05] [--bundle models/planet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
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
from serve_throughput import DEFAULT_BUNDLE, Server, build_bundle, make_jpegs  # noqa: E402

from serving.bundle import Bundle, load_bundle  # noqa: E402
from tests.serving.payloads import declared_png, images_input  # noqa: E402

MODELS = ("planet", "planet_b")


@dataclass
class Plan:
    """One request: what to send, and what must come back."""

    kind: str
    model: str
    inputs: list[triton.InferInput]
    code: str = "OK"
    version: str = ""
    outputs: list[str] = field(default_factory=list)
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
    ]


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


async def run(address: str, plans: list[Plan], concurrency: int, pid: int) -> Outcome:
    """Send every plan; the server's RSS after each tenth of them (each thousand of 10,000)."""
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
                outputs = [triton.InferRequestedOutput(name) for name in plan.outputs] or None
                began = time.perf_counter()
                try:
                    result = await client.infer(
                        plan.model,
                        plan.inputs,
                        model_version=plan.version,
                        outputs=outputs,
                        client_timeout=120,
                    )
                    code = "OK"
                except InferenceServerException as err:
                    code, result = str(err.status()).removeprefix("StatusCode."), None
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
                if done % every == 0:
                    rss.append(rss_mb(pid))
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcome


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
        for name in MODELS:  # one bundle under two names: the manifest's name must match the folder
            target = models / name / str(bundle.manifest.version)
            target.mkdir(parents=True)
            for file in bundle.path.iterdir():
                (target / file.name).write_bytes(file.read_bytes())
            manifest = json.loads((target / "manifest.json").read_text())
            manifest["name"] = name
            (target / "manifest.json").write_text(json.dumps(manifest))

        env = {"SERVE_METRICS_PORT": "0", "SERVE_POLL_INTERVAL_S": "0", "SERVE_LOG_FORMAT": "json"}
        with (tmp / "server.log").open("w") as log:
            server = Server(models, env, log)
            began = time.perf_counter()
            outcome = asyncio.run(run(server.address, plans, args.concurrency, server.process.pid))
            elapsed = time.perf_counter() - began
            crashed = server.process.poll() is not None
            exit_code = server.stop()

    rss, unexpected, latencies = outcome.rss, outcome.unexpected, sorted(outcome.latencies)
    growth = (rss[-1] - rss[1]) / rss[1] if len(rss) >= 3 else 0.0
    hostile_sent = sum(1 for p in plans if p.code != "OK")
    ok = not crashed and exit_code == 0 and not unexpected and growth < 0.10
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
