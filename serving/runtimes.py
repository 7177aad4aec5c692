"""Runtimes: the same network run by ONNX Runtime (the fp16 `model.onnx`) or by PyTorch.

Both take a prepared float32 batch (N, C, H, W) as a NumPy array and return float32 outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from serving.pipeline import Network

__all__ = ["OnnxRuntime", "Runtime", "RuntimeName", "TorchRuntime"]

RuntimeName = Literal["onnx", "torch"]


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """ONNX Runtime on the CPU provider, `threads` intra-op threads (all cores when None)."""

    name = "onnx"

    def __init__(self, model: Path | bytes, threads: int | None = None) -> None:
        import onnxruntime as ort  # here, not at import: a torch-only host need not install it

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs[0], dtype=np.float32)


class TorchRuntime:
    """The pickled network rebuilt in PyTorch: fp32 on the CPU (its fp16 weights upcast)."""

    name = "torch"

    def __init__(self, network: Network) -> None:
        self.model = network.build(torch.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()
