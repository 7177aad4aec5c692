"""Runtimes: the same network run by ONNX Runtime (the fp16 `model.onnx`) or by PyTorch.

Both take a prepared float32 batch (N, C, H, W) as a NumPy array and return float32 outputs, on
the CPU or, with `device="cuda"`, on the GPU. On CUDA, ONNX Runtime runs with IO binding (the batch
is copied to the device once, the outputs back once, with no extra staging copies), and PyTorch runs
in fp16 with channels_last and a pinned, non-blocking upload. `describe()` is what the server logs
when it loads a model, so an operator sees which runtime and device were picked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from serving.bundle.cuda_graphs import GraphedForward, GraphMode
from serving.bundle.pipeline import Network

__all__ = ["Device", "OnnxRuntime", "Runtime", "RuntimeName", "TorchRuntime", "cuda_available"]

RuntimeName = Literal["onnx", "torch"]
Device = Literal["cpu", "cuda"]


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray: ...

    def describe(self) -> str: ...


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
        self.output_name = self.session.get_outputs()[0].name
        self.device = device

    def run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """A batch on a device comes to the host first: ONNX Runtime binds host or its own memory."""
        if isinstance(batch, torch.Tensor):
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
        return f"onnxruntime {ort.__version__} on {self.device} ({provider}{binding})"


class TorchRuntime:
    """The pickled network rebuilt in PyTorch: fp32 on the CPU (fp16 weights upcast), fp16 on CUDA (fp32
    for a network whose weights had to stay fp32),
    where batches up to `max_batch` can replay CUDA graphs (`serving.bundle.cuda_graphs`)."""

    name = "torch"

    def __init__(
        self, network: Network, device: Device = "cpu", graphs: GraphMode = "off", max_batch: int = 64
    ) -> None:
        self.dtype = torch.float16 if device == "cuda" and network.precision == "fp16" else torch.float32
        self.device = torch.device(device)
        self.model = network.build(self.dtype).to(self.device)
        self.cuda = device == "cuda"
        if self.cuda:  # tensor cores want NHWC; on the CPU the default layout is the faster one here
            self.model = self.model.to(memory_format=torch.channels_last)
        self.graphs: GraphMode = graphs if self.cuda else "off"
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        if self.graphs != "off":
            self.forward = GraphedForward(self.model, max_batch, self.graphs)
        self.staging = torch.empty(0)  # pinned host memory, grown to the largest batch, reused

    def run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """A host batch is uploaded once (pinned, non-blocking); one already on the device is used there."""
        if not isinstance(batch, torch.Tensor) and np.issubdtype(batch.dtype, np.integer):
            # a text model's token ids: no precision, no layout
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.int64)).to(self.device)
        elif isinstance(batch, torch.Tensor):
            inputs = batch.to(self.device, self.dtype)
        else:
            host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            inputs = (self._upload(host) if self.cuda else host).to(self.dtype)
        if self.cuda and inputs.is_floating_point():
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.forward(inputs).float().cpu().numpy()

    def _upload(self, host: torch.Tensor) -> torch.Tensor:
        """Through one reused pinned buffer: pinning a fresh one per batch costs more than the copy.
        Reuse is safe because `run` waits for its outputs, so the previous upload has finished."""
        if self.staging.numel() < host.numel():
            self.staging = torch.empty(host.numel(), dtype=torch.float32, pin_memory=True)
        staged = self.staging[: host.numel()].view(host.shape).copy_(host)
        return staged.to(self.device, non_blocking=True)

    def describe(self) -> str:
        precision = str(self.dtype).removeprefix("torch.")
        layout = ", channels_last" if self.cuda else ""
        graphs = f", CUDA graphs by {self.graphs}" if self.graphs != "off" else ""
        return f"torch {torch.__version__} on {self.device.type} ({precision}{layout}{graphs})"


def cuda_available(runtime: RuntimeName) -> bool:
    """Whether `runtime` can run on a GPU here (onnxruntime-gpu's provider, or torch with CUDA)."""
    if runtime == "torch":
        return torch.cuda.is_available()
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()
