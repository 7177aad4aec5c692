"""Ask a running `serve-kit` about images, two ways: the standard KServe V2 client and the typed API.

    python examples/query_server.py --model planet IMAGE [IMAGE ...]            # a server on :8001
    python examples/query_server.py --start-server models --model planet IMAGE   # start, ask, stop

tritonclient speaks the V2 protocol unchanged; the typed API needs only grpcio and our stubs.
(Never import `serving.wire.inference_pb2` beside tritonclient: both register `inference.*` messages.)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton

from serving.wire import tasks_pb2
from serving.wire.tasks_pb2_grpc import TasksStub


@contextmanager
def started_server(models: Path) -> Iterator[str]:
    """`serve-kit serve` on a free port, stopped with SIGTERM (a clean drain) at the end."""
    command = [sys.executable, "-m", "serving.cli", "serve", "--models", str(models), "--port", "0"]
    env = {
        **os.environ,
        "SERVE_METRICS_PORT": "0",
        "SERVE_HTTP_PORT": "0",
        "SERVE_POLL_INTERVAL_S": "0",
        "SERVE_LOG_FORMAT": "text",
    }
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    try:
        for line in server.stdout:
            found = re.search(r"listening on ([\d.]+:\d+)", line)
            if found:
                print(line.strip())
                yield found[1]
                break
        else:
            raise SystemExit("serve-kit exited before it listened; see its log above")
    finally:
        server.send_signal(signal.SIGTERM)
        print(f"serve-kit stopped (exit {server.wait(60)})")


def ask_v2(address: str, model: str, images: list[bytes]) -> None:
    client = triton.InferenceServerClient(address)
    print(f"V2: server ready {client.is_server_ready()}, model {model} ready {client.is_model_ready(model)}")
    outputs = {tensor.name for tensor in client.get_model_metadata(model).outputs}
    if not {"labels", "scores"} <= outputs:  # this example reads a multi-label (planet-style) model
        raise SystemExit(
            f"model {model!r} is not multi-label: it answers {sorted(outputs)}, not labels and scores"
        )
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    result = client.infer(model, [tensor])
    for labels, scores in zip(result.as_numpy("labels"), result.as_numpy("scores"), strict=True):
        print(f"V2:    labels {labels.decode()!r:40} top score {scores.max():.3f}")


def ask_typed(address: str, model: str, images: list[bytes]) -> None:
    with grpc.insecure_channel(address) as channel:
        request = tasks_pb2.ClassifyRequest(model=tasks_pb2.ModelRef(name=model), images=images)
        response = TasksStub(channel).Classify(request, timeout=30)
    for result in response.results:
        top = ", ".join(f"{s.label} {s.score:.2f}" for s in sorted(result.scores, key=lambda s: -s.score)[:3])
        print(f"Tasks: labels {' '.join(result.labels)!r:40} top {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="planet")
    parser.add_argument("--address", default="127.0.0.1:8001")
    parser.add_argument(
        "--start-server", type=Path, metavar="MODELS", help="start serve-kit on this repository"
    )
    args = parser.parse_args()
    images = [path.read_bytes() for path in args.images]
    if args.start_server is None:
        ask_v2(args.address, args.model, images)
        ask_typed(args.address, args.model, images)
        return
    with started_server(args.start_server) as address:
        ask_v2(address, args.model, images)
        ask_typed(address, args.model, images)


if __name__ == "__main__":
    main()
