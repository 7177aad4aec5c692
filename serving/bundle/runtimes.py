"""Runtimes: the same network run by ONNX Runtime (the fp16 `model.onnx`) or by PyTorch
(`serving.bundle.torch_runtime`, imported only when chosen: the ONNX path never loads torch).

Both take a prepared float32 batch (N, C, H, W) as a NumPy array and return float32 outputs, on
the CPU or, with `device="cuda"`, on the GPU. On CUDA, ONNX Runtime runs with IO binding (the batch
is copied to the device once, the outputs back once, with no extra staging copies), and PyTorch runs
in fp16 with channels_last and a pinned, non-blocking upload. `describe()` is what the server logs
when it loads a model, so an operator sees which runtime and device were picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Device", "GraphMode", "OnnxRuntime", "Runtime", "RuntimeName", "buckets", "cuda_available"]

RuntimeName = Literal["onnx", "torch"]
Device = Literal["cpu", "cuda"]
GraphMode = Literal["off", "capture", "compile"]
"""CUDA graphs for the PyTorch runtime on a GPU (`serving.bundle.cuda_graphs`)."""


def buckets(max_batch: int) -> list[int]:
    """The batch sizes CUDA graphs are captured for: powers of two below `max_batch`, then
    `max_batch` itself: 1, 2, 4, ..., max."""
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch]
    return [*sizes, max_batch]


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray: ...

    def describe(self) -> str: ...


class OnnxRuntime:
    """ONNX Runtime, `threads` intra-op threads (all cores when None)."""

    name = "onnx"

    def __init__(
        self,
        model: Path | bytes,
        threads: int | None = None,
        device: Device = "cpu",
        graph: str = "model.onnx",
    ) -> None:
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
        self.output_name = self.session.get_outputs()[0].name
        self.device, self.graph = device, graph

    def run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """A batch on a device comes to the host first: ONNX Runtime binds host or its own memory."""
        if not isinstance(batch, np.ndarray):  # a tensor, on a device
            batch = batch.cpu().numpy()
        integer = np.issubdtype(batch.dtype, np.integer)  # a text model's token ids stay int64
        inputs = np.ascontiguousarray(batch, dtype=np.int64 if integer else np.float32)
        if self.device == "cuda":
            return self._run_bound(inputs)
        outputs = self.session.run(None, {self.input_name: inputs})
        return np.asarray(outputs[0], dtype=np.float32)

    def _run_bound(self, inputs: np.ndarray) -> np.ndarray:
        """IO binding: one upload of the batch to the GPU, the output left there until one download."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(inputs, "cuda", 0))
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def describe(self) -> str:
        import onnxruntime as ort

        provider = self.session.get_providers()[0]
        binding = ", IO binding" if self.device == "cuda" else ""
        graph = "" if self.graph == "model.onnx" else f"{self.graph}, "  # the CPU graph says so
        return f"onnxruntime {ort.__version__} on {self.device} ({graph}{provider}{binding})"


def cuda_available(runtime: RuntimeName) -> bool:
    """Whether `runtime` can run on a GPU here (onnxruntime-gpu's provider, or torch with CUDA)."""
    if runtime == "torch":
        import torch

        return torch.cuda.is_available()
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()
