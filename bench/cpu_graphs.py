"""Model-alone items/s on this CPU for each graph a bundle could run: the fp16 `model.onnx` (today's
one graph), an fp32 export of the same weights, and the int8 `model.cpu.onnx` the export wrote (static,
per-channel, calibrated on training images), against the fp16 graph in the same run.

Every graph gets the same ONNX Runtime intra-op threads and the same prepared batch; rounds alternate
the graphs, and each round times `--iters` runs of one batch. CPU seconds per item beside items/s;
medians and ranges over the rounds; the parity each graph passed at export (against PyTorch fp32 on
validation images) beside it. Prints one JSON line.

    python bench/cpu_graphs.py [--bundle models/planet] [--threads 1] [--batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from serving.bundle import load_bundle
from serving.bundle.onnx_export import to_onnx
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.tasks import task_for

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from load import load_average, span  # noqa: E402
from serve_throughput import build_bundle  # noqa: E402
from servers import make_jpegs  # noqa: E402


def timed(runtime: OnnxRuntime, batch: np.ndarray, iters: int) -> tuple[float, float]:
    """(items/s, CPU µs per item) over `iters` runs of `batch`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        runtime.run(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    items = iters * len(batch)
    return items / wall, cpu / items * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, help="models/<name>[/<version>] (default: build a resnet18 demo)"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, every graph")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--model-size", type=int, default=64, help="input size of the bundle built without --bundle"
    )
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = args.bundle or build_bundle(tmp, args.model_size)
        bundle = load_bundle(path, threads=args.threads)
        jpegs, _ = make_jpegs(tmp, 128, count=args.batch)
        batch = bundle.prepare(jpegs)
        fp32_path = tmp / "fp32.onnx"
        spatial = task_for(bundle.manifest.task).spatial
        import torch

        network, output = bundle.pipeline.network.build(), bundle.manifest.outputs[0].name
        to_onnx(network, torch.from_numpy(batch[:2]), fp32_path, output, spatial=spatial, fp16=False)
        graphs: dict[str, OnnxRuntime] = {
            f"model.onnx ({bundle.manifest.precision})": OnnxRuntime(bundle.onnx_model, args.threads),
            "fp32 export": OnnxRuntime(fp32_path, args.threads),
        }
        if bundle.cpu_onnx_model is not None and bundle.manifest.cpu_graph is not None:
            graphs[f"model.cpu.onnx ({bundle.manifest.cpu_graph.precision})"] = OnnxRuntime(
                bundle.cpu_onnx_model, args.threads
            )
        for runtime in graphs.values():
            runtime.run(batch)  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in graphs}
        cpu: dict[str, list[float]] = {name: [] for name in graphs}
        for _ in range(args.rounds):
            for name, runtime in graphs.items():
                items_s, us = timed(runtime, batch, args.iters)
                rates[name].append(items_s)
                cpu[name].append(us)
        baseline = next(iter(graphs))
        expected = bundle.runtime("torch").run(batch)
        results = {}
        for name, runtime in graphs.items():
            ratios = [r / b for r, b in zip(rates[name], rates[baseline], strict=True)]
            results[name] = {
                "items_s": span(rates[name]),
                "cpu_us_per_item": span(cpu[name], 0),
                "ratio_vs_fp16": span(ratios, 2),
                "max_abs_output_diff_vs_torch_fp32": round(
                    float(np.abs(runtime.run(batch) - expected).max()), 4
                ),
            }
        manifest = bundle.manifest
        print(json.dumps({
            "bench": "cpu_graphs", "bundle": str(bundle.path), "task": manifest.task, "batch": args.batch,
            "threads": args.threads, "rounds": args.rounds, "iters": args.iters, "graphs": results,
            "export_parity": {
                "model.onnx": manifest.parity.model_dump(),
                "model.cpu.onnx": manifest.cpu_graph.model_dump() if manifest.cpu_graph else None,
            },
            "load_average": {"before": load_before, "after": load_average()},
        }))  # fmt: skip


if __name__ == "__main__":
    main()
