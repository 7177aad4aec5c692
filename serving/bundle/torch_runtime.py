"""The PyTorch runtime: the pickled network rebuilt in torch, on the CPU or a GPU (with CUDA graphs).

Imported only where it is chosen (`Bundle.runtime("torch")`), so the ONNX path never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from serving.bundle.cuda_graphs import GraphedForward
from serving.bundle.pipeline import Network
from serving.bundle.runtimes import Device, GraphMode

__all__ = ["TorchRuntime"]


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
