"""The GPU check for a lent device (one short run): fp16 vs fp32 inference of the PyTorch runtime, their
parity, and one fp16 training step, for resnet34 at batch 1, 16 and 64; the serving TorchRuntime eager,
with captured CUDA graphs and with torch.compile's; images prepared on the GPU (nvJPEG decode, resize,
normalize) against the server's host path; a real bundle (`--bundle`) served by `ServedModel` on the
GPU. Prints one JSON line.

Needs only torch and torchvision (the lent machine has PyTorch with CUDA, no onnxruntime-gpu, no
network). It uses this project's own network builder and `TorchRuntime` path when they import there,
else torchvision's resnet34 directly, and says which. Target: fp16 ≥ 1.8× fp32 items/s at batch 64.

    bash bench/gpu_check.sh            # on the GPU machine; `--device cpu` checks the script itself
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from PIL import Image
from torch import nn


def network() -> tuple[nn.Module, str]:
    """resnet34 with the kit's head if `serving` imports here, else torchvision's resnet34."""
    try:
        from serving.bundle.networks.cnn import CnnSpec, build_cnn

        return build_cnn(
            CnnSpec("resnet34", 17)
        ), "serving.bundle.networks.cnn.build_cnn(resnet34, 17 labels)"
    except ImportError:
        from torchvision.models import resnet34

        return resnet34(weights=None, num_classes=17), "torchvision resnet34 (serving not importable)"


def items_per_second(run: Callable[[], object], batch: int, device: torch.device, seconds: float) -> float:
    """Median of 3 windows of back-to-back runs, synchronised, after a warm-up."""
    for _ in range(3):
        run()
    rates = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            run()
            count += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(count * batch / (time.perf_counter() - began))
    return statistics.median(rates)


def served_runtimes(model: nn.Module, device: torch.device, size: int, seconds: float) -> dict[str, object]:
    """The server's own TorchRuntime on this device (fp16, channels_last, pinned upload) eager, with
    captured CUDA graphs and with torch.compile's, at batch 1, 16 and 64; parity against the CPU's
    fp32 TorchRuntime on the same weights: what `serve-kit --runtime torch` would answer here."""
    if device.type != "cuda":
        return {"skipped": "CPU run: the serving runtimes' CUDA paths need a GPU"}
    try:
        from serving.bundle.networks.cnn import CnnSpec
        from serving.bundle.pipeline import Network
        from serving.bundle.torch_runtime import TorchRuntime
    except ImportError as err:
        return {"skipped": f"serving not importable here ({err})"}
    network = Network.from_module(CnnSpec("resnet34", 17), copy.deepcopy(model).float().cpu())
    on_cpu = TorchRuntime(network, "cpu")
    results: dict[str, object] = {}
    for graphs in ("off", "capture", "compile"):
        began = time.perf_counter()
        try:
            runtime = TorchRuntime(network, "cuda", graphs, max_batch=64)
            rates, gaps = {}, []
            for batch in (1, 16, 64):
                inputs = torch.randn(batch, 3, size, size).numpy()
                rate = items_per_second(partial(runtime.run, inputs), batch, device, seconds)
                rates[str(batch)] = round(rate, 1)
                gaps.append(float(abs(runtime.run(inputs) - on_cpu.run(inputs)).max()))
            results[graphs] = {
                "describe": runtime.describe(), "items_s": rates,
                "max_abs_diff_vs_cpu_fp32": round(max(gaps), 4),
                "build_and_measure_s": round(time.perf_counter() - began, 1),
            }  # fmt: skip
        except Exception as err:  # a compiler failure is a finding to report, not a reason to lose the rest
            results[graphs] = {"failed": f"{type(err).__name__}: {err}"[:400]}
    return results


def served_engine(bundle_dir: str | None, device: torch.device, seconds: float) -> dict[str, object]:
    """A real bundle through `ServedModel` (dynamic batcher, decode pool, runtime) on this GPU, as
    64 one-image requests at a time: images prepared on the host or on the GPU, CUDA graphs off or
    captured; answers compared with the bundle's own ONNX Runtime on the CPU."""
    if bundle_dir is None:
        return {"skipped": "needs --bundle"}
    import asyncio

    from serving.bundle import load_bundle
    from serving.bundle.runtimes import Device, GraphMode
    from serving.server.batcher import BatchingConfig
    from serving.server.decode_turns import DecodeTurns
    from serving.server.prometheus import ServerMetrics
    from serving.server.served_model import ServedModel

    bundle = load_bundle(bundle_dir)
    jpegs = photo_like_jpegs(64, 480, 640)
    expected = bundle.runtime("onnx").run(bundle.prepare(jpegs))
    results: dict[str, object] = {"bundle": bundle.manifest.name, "size": bundle.image_size}
    where: Device = "cuda" if device.type == "cuda" else "cpu"
    configurations: list[tuple[bool, GraphMode]] = [(False, "off"), (True, "off"), (True, "capture")]
    for prepare_on_gpu, graphs in configurations:
        pool = ThreadPoolExecutor(4)
        model = ServedModel(
            bundle, "torch", where, BatchingConfig(32, 2000, 1024), DecodeTurns(pool, 4),
            ServerMetrics().for_model(f"m{prepare_on_gpu}{graphs}", 1), 40_000_000, prepare_on_gpu, graphs,
        )  # fmt: skip
        model.warm_up()

        async def one(data: bytes, model: ServedModel = model) -> np.ndarray:
            items, _ = await model.prepare([data])
            return await model.infer(items, None)

        async def rounds(model: ServedModel = model) -> tuple[float, np.ndarray]:
            model.start()
            try:
                answers = np.concatenate(await asyncio.gather(*(one(d) for d in jpegs)))
                count, began = 0, time.perf_counter()
                while time.perf_counter() - began < seconds * 3:
                    await asyncio.gather(*(one(d) for d in jpegs))
                    count += len(jpegs)
                return count / (time.perf_counter() - began), answers
            finally:
                await model.stop()

        rate, answers = asyncio.run(rounds())
        pool.shutdown()
        results[f"{'gpu' if prepare_on_gpu else 'host'}_prep_graphs_{graphs}"] = {
            "images_s": round(rate, 1),
            "max_abs_logit_diff_vs_onnx_cpu": round(float(abs(answers - expected).max()), 4),
        }  # fmt: skip
    return results


def photo_like_jpegs(count: int, height: int, width: int) -> list[bytes]:
    """Smooth gradients with mild noise: JPEGs of a photo's size and compressed size, no data set."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    jpegs = []
    for _ in range(count):
        phases = rng.random(3) * 6
        planes = [np.sin(6 * x + 3 * y + p) for p in phases]
        pixels = (np.stack(planes, -1) * 100 + 128 + rng.normal(0, 8, (height, width, 3))).clip(0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def image_preparation(device: torch.device, seconds: float, threads: int) -> dict[str, object]:
    """A batch of 64 photo-sized JPEGs prepared for a 224-pixel model: the server's host path (its
    decode pool, `threads` wide) against `serving.bundle.device_images.prepare_on_device`."""
    try:
        from serving.bundle.device_images import prepare_on_device
        from serving.bundle.pipeline import ImagePreprocess
    except ImportError as err:
        return {"skipped": f"serving not importable here ({err})"}
    preprocess = ImagePreprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    results: dict[str, object] = {}
    with ThreadPoolExecutor(threads) as pool:
        for height, width in ((480, 640), (1080, 1920)):
            jpegs = photo_like_jpegs(64, height, width)

            def on_host(jpegs: list[bytes] = jpegs) -> torch.Tensor:
                items = list(pool.map(preprocess.prepare_item, jpegs))
                return torch.from_numpy(np.stack([item for item, _ in items])).to(device)

            def on_device(jpegs: list[bytes] = jpegs) -> torch.Tensor:
                return prepare_on_device(preprocess, jpegs, device)[0]

            host = items_per_second(on_host, 64, device, seconds)
            gpu = items_per_second(on_device, 64, device, seconds)
            std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)
            levels = float(((on_host() - on_device()) * std * 255).abs().max())
            results[f"{width}x{height}"] = {
                "host_images_s": round(host, 1), "device_images_s": round(gpu, 1),
                "speedup": round(gpu / host, 2), "max_level_diff": round(levels, 2),
            }  # fmt: skip
    return {"host_threads": threads, "batch": 64, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--decode-threads", type=int, default=4, help="the server's decode_threads")
    parser.add_argument("--bundle", help="an exported bundle to serve through ServedModel on the GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on the lent GPU machine (or pass --device cpu)")
    half = torch.float16 if device.type == "cuda" else torch.bfloat16  # CPUs lack fast fp16 convolutions
    model, source = network()
    fp32 = model.to(device).eval().to(memory_format=torch.channels_last)
    reduced = copy.deepcopy(fp32).to(half)
    results: dict[str, object] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 3, args.size, args.size, device=device)
        x, x_low = x.contiguous(memory_format=torch.channels_last), x.to(half)
        with torch.inference_mode():
            full = items_per_second(partial(fp32, x), batch, device, args.seconds)
            fast = items_per_second(partial(reduced, x_low), batch, device, args.seconds)
            want, got = fp32(x), reduced(x_low).float()
            gap = float((want - got).abs().max())
            same = float((want.argmax(1) == got.argmax(1)).float().mean())
        results[str(batch)] = {
            "fp32_items_s": round(full, 1), "low_items_s": round(fast, 1), "speedup": round(fast / full, 2),
            "max_abs_diff": round(gap, 4), "same_argmax": same,
        }  # fmt: skip

    train = copy.deepcopy(fp32).train()
    opt = torch.optim.AdamW(train.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=half == torch.float16)
    x = torch.randn(16, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (16, 17), device=device).float()
    began = time.perf_counter()
    with torch.autocast(device.type, dtype=half):
        loss = nn.functional.binary_cross_entropy_with_logits(train(x).float(), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step = {"loss": round(float(loss.detach()), 4), "finite": bool(torch.isfinite(loss.detach()))}
    step["seconds"] = round(time.perf_counter() - began, 3)
    runtimes = served_runtimes(fp32, device, args.size, args.seconds)
    preparation = image_preparation(device, args.seconds, args.decode_threads)
    try:
        engine = served_engine(args.bundle, device, args.seconds)
    except Exception as err:  # report it beside the numbers above instead of losing them
        engine = {"failed": f"{type(err).__name__}: {err}"[:400]}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({
        "bench": "gpu_check", "device": name, "torch": torch.__version__, "network": source,
        "size": args.size, "low_precision": str(half), "inference": results, "train_step": step,
        "serving_runtimes": runtimes, "image_preparation": preparation, "served_engine": engine,
        "target_speedup_at_64": 1.8,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
