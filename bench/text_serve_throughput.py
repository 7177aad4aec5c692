"""Texts/s of a real `serve-kit` serving a sentiment bundle, against raw ONNX Runtime on the same texts.

32 clients each send one UTF-8 text per request, back to back, through the unmodified tritonclient
(aio); the server tokenizes, batches dynamically, runs its batches in groups of similar length and
answers probabilities and labels. The baseline, in this process on the server's cores with its
intra-op threads: the same texts in batches of `max_batch_size`, tokenized by the bundle on one
thread (the server's one decode thread), run in groups of similar length as the server runs them
(`serving.bundle.text_batches.run_by_length`), `InferenceSession.run`, softmax. The clients run on
the other cores (`--no-pin`: anywhere); CPU µs per text of both sides is reported. Texts are the
validation reviews (`--data`, as `train-kit data sentiment` writes them), or synthetic ones of
mixed lengths without it. Several runs, alternated; medians and ranges. Prints one JSON line.
Target: ratio >= 0.9.

    python bench/text_serve_throughput.py --bundle models/reviews [--data data/reviews] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# This process must never import serving.wire / v2 / server / tasks (tritonclient clashes with them).
import tritonclient.grpc.aio as triton

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from load import Window, load_average, split_cores  # noqa: E402
from serve_throughput import paired_windows, summary  # noqa: E402
from servers import Server, bench_env, repository  # noqa: E402

from serving.bundle import load_bundle, resolve_version  # noqa: E402
from serving.bundle.runtimes import OnnxRuntime  # noqa: E402
from serving.bundle.text_batches import run_by_length  # noqa: E402
from serving.bundle.text_preprocess import TextPreprocess  # noqa: E402


def read_texts(data: Path | None, count: int) -> tuple[list[str], str]:
    """Validation reviews from `data/reviews.csv`, or synthetic texts of 5 to 400 words."""
    if data is not None and (data / "reviews.csv").is_file():
        with (data / "reviews.csv").open(encoding="utf-8", newline="") as f:
            texts = [row["text"] for row in csv.DictReader(f) if row["is_valid"].lower() == "true"]
        return texts[:count], f"validation reviews of {data}"
    rng = np.random.default_rng(0)
    words = ["the", "film", "was", "a", "wonderful", "dull", "story", "with", "superb", "and", "awful"]
    lengths = rng.integers(5, 400, count)
    return [" ".join(rng.choice(words, n)) for n in lengths], "synthetic, 5 to 400 words"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/reviews"), help="models/<name>[/<v>]")
    parser.add_argument("--data", type=Path, default=Path("data/reviews"), help="where reviews.csv lies")
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument(
        "--threads", type=int, help="intra-op threads, server and baseline (default: its cores)"
    )
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients apart")
    args = parser.parse_args()
    args.cores = split_cores(not args.no_pin)
    args.threads = args.threads or len(args.cores.server)
    load_before = load_average()

    bundle = load_bundle(args.bundle, threads=args.threads)
    if bundle.manifest.task != "sentiment":
        sys.exit(f"{args.bundle}: a {bundle.manifest.task} bundle; this benchmark needs a sentiment one")
    texts, source = read_texts(args.data, args.texts)
    bs, post = args.max_batch_size, bundle.pipeline.postprocess
    runtime = bundle.runtime("onnx")
    assert isinstance(runtime, OnnxRuntime)
    session, input_name = runtime.session, runtime.input_name
    batches = [texts[i : i + bs] for i in range(0, len(texts), bs)]

    preprocess = bundle.pipeline.preprocess
    assert isinstance(preprocess, TextPreprocess)

    def raw(k: int) -> int:
        chunk = batches[k % len(batches)]
        rows = run_by_length(
            [preprocess.prepare(text) for text in chunk], lambda ids: session.run(None, {input_name: ids})[0]
        )
        post(np.stack(rows), [])
        return len(chunk)

    inputs = []
    for text in texts:
        tensor = triton.InferInput("texts", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
        inputs.append(tensor)
    # one decode thread: it tokenizes, and the baseline tokenizes on one thread
    env = bench_env(bs, args.max_queue_delay_us, args.threads, 1)
    served: list[Window] = []
    local: list[Window] = []
    name = bundle.manifest.name
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (tmp / "serve-kit.log").open("w+") as log:
            with args.cores.on_server_cores():
                server = Server(repository(bundle, tmp / "repository"), env, log)
            try:
                for run in range(args.runs):
                    window = paired_windows(run, server, name, inputs, raw, args)
                    served.append(window[0])
                    local.append(window[1])
            finally:
                code = server.stop()
            if code != 0:
                sys.exit(f"serve-kit exited {code} after SIGTERM:\n{server.stderr()[-3000:]}")
    tokens = [len(ids) for ids in preprocess.tokenizer.encode(texts)]
    print(json.dumps({
        "bench": "text_serve_throughput", "bundle": str(resolve_version(args.bundle)), "texts": source,
        "tokens_median": statistics.median(tokens), "tokens_max": max(tokens),
        "clients": args.clients, "max_batch_size": bs, "runs": args.runs, "seconds": args.seconds,
        "intra_op_threads": args.threads, "decode_threads": 1,
        "cores": {"server": sorted(args.cores.server), "client": sorted(args.cores.client)},
        **summary(served, local), "target": 0.9,
        "load_average": {"before": load_before, "after": load_average()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
