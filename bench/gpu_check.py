"""The GPU check for a lent device (one short run): fp16 vs fp32 inference of the PyTorch runtime, their
parity, and one fp16 training step, for resnet34 at batch 1, 16 and 64. Prints one JSON line.

Needs only torch and torchvision (the lent machine has PyTorch with CUDA, no onnxruntime-gpu, no
network). It uses this project's own network builder and `TorchRuntime` path when they import there,
else torchvision's resnet34 directly, and says which. Target: fp16 ≥ 1.8× fp32 items/s at batch 64.

    bash bench/gpu_check.sh            # on the GPU machine; `--device cpu` checks the script itself
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn


def network() -> tuple[nn.Module, str]:
    """resnet34 with the kit's head if `serving` imports here, else torchvision's resnet34."""
    try:
        from serving.networks import CnnSpec, build_cnn

        return build_cnn(CnnSpec("resnet34", 17)), "serving.networks.build_cnn(resnet34, 17 labels)"
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


def served_runtimes(model: nn.Module, device: torch.device) -> dict[str, object]:
    """The server's own TorchRuntime on this device (fp16, channels_last, pinned upload) against
    the CPU fp32 one, on the same weights: what `serve-kit` would answer here."""
    if device.type != "cuda":
        return {"skipped": "CPU run: the serving runtimes' CUDA paths need a GPU"}
    try:
        from serving.networks import CnnSpec
        from serving.pipeline import Network
        from serving.runtimes import TorchRuntime
    except ImportError as err:
        return {"skipped": f"serving not importable here ({err})"}
    network = Network.from_module(CnnSpec("resnet34", 17), copy.deepcopy(model).float().cpu())
    batch = torch.randn(32, 3, 224, 224).numpy()
    on_gpu, on_cpu = TorchRuntime(network, "cuda"), TorchRuntime(network, "cpu")
    gap = float(abs(on_gpu.run(batch) - on_cpu.run(batch)).max())
    rate = items_per_second(lambda: on_gpu.run(batch), 32, device, 2.0)
    return {"torch_runtime": on_gpu.describe(), "items_s_at_32": round(rate, 1), "max_abs_diff_vs_cpu": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=2.0)
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
    runtimes = served_runtimes(fp32, device)
    step = {"loss": round(float(loss), 4), "finite": bool(torch.isfinite(loss))}
    step["seconds"] = round(time.perf_counter() - began, 3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({
        "bench": "gpu_check", "device": name, "torch": torch.__version__, "network": source,
        "size": args.size, "low_precision": str(half), "inference": results, "train_step": step,
        "serving_runtimes": runtimes,
        "target_speedup_at_64": 1.8,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
