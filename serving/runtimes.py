"""Runtimes: the same network run by ONNX Runtime (the fp16 `model.onnx`) or by PyTorch.

Both take a prepared float32 batch (N, C, H, W) as a NumPy array and return float32 outputs, on
the CPU or, with `device="cuda"`, on the GPU (ONNX Runtime's CUDA provider; PyTorch in fp16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from serving.pipeline import Network

__all__ = ["Device", "OnnxRuntime", "Runtime", "RuntimeName", "TorchRuntime", "cuda_available"]

RuntimeName = Literal["onnx", "torch"]
Device = Literal["cpu", "cuda"]


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """ONNX Runtime, `threads` intra-op threads (all cores when None)."""

    name = "onnx"

    def __init__(self, model: Path | bytes, threads: int | None = None, device: Device = "cpu") -> None:
        import onnxruntime as ort  # here, not at import: a torch-only host need not install it

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=providers)
        if providers[0] not in self.session.get_providers():  # ORT falls back silently; we do not
            raise RuntimeError(
                f"ONNX Runtime could not start {providers[0]} (has {self.session.get_providers()})"
            )
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs[0], dtype=np.float32)


class TorchRuntime:
    """The pickled network rebuilt in PyTorch: fp32 on the CPU (its fp16 weights upcast), fp16 on CUDA."""

    name = "torch"

    def __init__(self, network: Network, device: Device = "cpu") -> None:
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        self.device = torch.device(device)
        self.model = network.build(self.dtype).to(self.device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
        with torch.inference_mode():
            return self.model(inputs).float().cpu().numpy()


def cuda_available(runtime: RuntimeName) -> bool:
    """Whether `runtime` can run on a GPU here (onnxruntime-gpu's provider, or torch with CUDA)."""
    if runtime == "torch":
        return torch.cuda.is_available()
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()
