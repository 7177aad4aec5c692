"""CUDA graphs for a served network: one graph per batch-size bucket, each batch padded up to its bucket.

Why: at small batches the GPU mostly waits for Python to launch kernels one by one; replaying a
captured graph launches them all at once (resnet34 fp16 on an H100: batch 1 ran 16× faster under
CUDA graphs than eager, `bench/gpu_check.py`). The dynamic batcher sends any size from 1 to its
maximum, so sizes are rounded up to powers of two: about log2(max) graphs, a padded row costing
compute but no launches, and the rows it adds never reach an answer (inference has no batch
statistics: every row is computed alone).

Two ways to get the graphs:
- `capture`: torch.cuda.CUDAGraph around the eager network. Needs nothing but the CUDA runtime.
- `compile`: torch.compile(mode="reduce-overhead"), which also fuses kernels (Inductor + Triton), so
  it helps at large batches too, but compiles for tens of seconds per bucket at load and needs a C
  compiler on the host (Triton builds its launcher), which a slim CUDA runtime image lacks.
A graph is captured (or compiled) the first time its bucket runs; `ServedModel.warm_up` runs every
bucket on the inference thread at load, so no request pays for it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from serving.bundle.runtimes import GraphMode, buckets

__all__ = ["GraphMode", "GraphedForward", "buckets"]


class GraphedForward:
    """`model(batch)` replayed from a CUDA graph of the batch's bucket; a batch larger than every
    bucket runs eagerly. The returned tensor is overwritten by the next call: copy it first."""

    def __init__(self, model: nn.Module, max_batch: int, mode: Literal["capture", "compile"]) -> None:
        self.model, self.mode, self.sizes = model, mode, buckets(max_batch)
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False) if mode == "compile" else None
        self.compiled = compiled
        self.graphs: dict[torch.Size, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.pool: Any = None  # one memory pool shared by every captured graph (torch's handle type)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        count = len(batch)
        size = next((s for s in self.sizes if s >= count), None)
        if size is None:
            return self.model(batch)
        if size > count:
            padding = batch.new_zeros((size - count, *batch.shape[1:]))
            batch = torch.cat([batch, padding]).contiguous(memory_format=torch.channels_last)
        if self.compiled is not None:
            return self.compiled(batch)[:count]
        return self._replay(batch)[:count]

    def _replay(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape not in self.graphs:
            self.graphs[batch.shape] = self._capture(batch)
        graph, static_input, static_output = self.graphs[batch.shape]
        static_input.copy_(batch)
        graph.replay()
        return static_output

    def _capture(self, batch: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        """Warm up on a side stream (cuDNN picks its kernels), then record one forward pass."""
        static_input = batch.clone(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.model(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_output = self.model(static_input)
        self.pool = graph.pool()
        return graph, static_input, static_output
