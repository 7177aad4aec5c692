"""One served model version: its bundle, its runtime, its batch queue, and who is using it.

Images are decoded and prepared in a shared thread pool (several at once, off the event loop), or,
for a model PyTorch runs on CUDA, decoded, resized and normalized on the GPU (`device_images`);
prepared items go through the model's `DynamicBatcher`, whose batches run in the model's own
inference thread. A `Lease` counts a request in flight, so a retired version is stopped only
after the requests that chose it have their answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from serving.bundle import Bundle
from serving.bundle.cuda_graphs import GraphMode, buckets
from serving.bundle.device_images import ItemDecodeError, prepare_on_device
from serving.bundle.images import ImageDecodeError
from serving.bundle.pipeline import ImagePreprocess, Size, stack_items, warm_up_batch
from serving.bundle.runtimes import Device, Runtime, RuntimeName
from serving.bundle.text_batches import run_by_length
from serving.bundle.text_preprocess import TextError, TextPreprocess
from serving.server.batcher import BatchingConfig, DynamicBatcher
from serving.server.memory import MemoryBudget
from serving.server.prometheus import ModelMetrics
from serving.server.statistics import current_timing, stage

__all__ = ["ItemError", "ServedModel", "TooManyItemsError"]

log = logging.getLogger(__name__)

Item = np.ndarray | torch.Tensor
"""A prepared item: an image (C, H, W), float32 in host memory or already on the inference device,
or a text's int64 token ids (T,)."""


class TooManyItemsError(ValueError):
    """One request holds more items than the queue can ever take (gRPC: INVALID_ARGUMENT)."""


class ItemError(ValueError):
    """One item of a request is unusable (gRPC: INVALID_ARGUMENT); `index` says which."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"item {index}: {reason}")
        self.index, self.reason = index, reason


@dataclass(frozen=True)
class ImageShape:
    channels: int
    height: int
    width: int


class ServedModel:
    def __init__(
        self,
        bundle: Bundle,
        runtime: RuntimeName,
        device: Device,
        batching: BatchingConfig,
        decode_pool: Executor,
        metrics: ModelMetrics,
        max_image_pixels: int,
        prepare_on_gpu: bool = False,
        graphs: GraphMode = "off",
        memory: MemoryBudget | None = None,
    ) -> None:
        self.bundle, self.metrics = bundle, metrics
        self.name, self.version = bundle.manifest.name, bundle.manifest.version
        self.task = bundle.manifest.task
        pre = bundle.pipeline.preprocess
        self.text = isinstance(pre, TextPreprocess)
        # images at their own resolution (a segmenter's): batches of any height and width
        self.native = isinstance(pre, ImagePreprocess) and pre.resize == "pad"
        # CUDA graphs need fixed shapes: a text batch's length varies with every batch
        on_gpu = device == "cuda" and runtime == "torch" and not self.text
        self.graphs: GraphMode = graphs if on_gpu and not self.native else "off"
        self.runtime: Runtime = bundle.runtime(runtime, device, self.graphs, batching.max_batch_size)
        self.device = device
        self.prepare_on_gpu = prepare_on_gpu and on_gpu
        self.decode_pool, self.max_image_pixels = decode_pool, max_image_pixels
        self.inference = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{self.name}-{self.version}")
        self.batcher: DynamicBatcher[Item, np.ndarray] = DynamicBatcher(
            self._run_batch, batching, self.inference
        )
        side = -1 if self.native else getattr(pre, "size", 0)
        self.input_shape = None if isinstance(pre, TextPreprocess) else ImageShape(3, side, side)
        self.memory = memory or MemoryBudget(1 << 62)
        # what one prepared item holds: int64 token ids (at most max_tokens), or a float32 image
        self.item_bytes = 8 * pre.max_tokens if isinstance(pre, TextPreprocess) else 4 * 3 * pre.size**2
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def warm_up(self) -> None:
        """Run one batch of each size a caller is likely to see first (with CUDA graphs: every
        bucket, captured on the inference thread that will replay them), so no request pays for it."""
        largest = self.batcher.config.max_batch_size
        sizes = buckets(largest) if self.graphs != "off" else sorted({1, largest})
        for n in sizes:
            batch = warm_up_batch(self.bundle.pipeline.preprocess, n)
            self.inference.submit(self.runtime.run, batch).result()

    def start(self) -> None:
        self.batcher.start()
        self.metrics.track_queue_depth(self, lambda: self.batcher.depth)

    async def stop(self) -> None:
        """Wait for the requests holding a lease, finish the queue, release the runtime."""
        await self._idle.wait()
        await self.batcher.stop()
        self.inference.shutdown(wait=True)
        self.metrics.release_queue_depth(self)
        log.info("unloaded model", extra={"model": self.name, "version": self.version})

    @contextmanager
    def lease(self) -> Iterator[ServedModel]:
        """Count a request in flight; taken synchronously, so a swap cannot slip in between."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def admit(self, count: int, payload_bytes: int = 0) -> None:
        """Refuse a request before any work is spent on it: too many items ever, no room in the queue
        now, or no room in the memory budget for what it sent and what preparing it will hold."""
        limit = self.batcher.config.max_queue_size
        if count > limit:
            raise TooManyItemsError(f"{count} items in one request; at most {limit} (max_queue_size) fit")
        self.batcher.check_room(count)
        self.memory.reserve(payload_bytes + count * self.item_bytes)

    async def prepare_images(self, images: Sequence[bytes]) -> tuple[list[Item], list[Size]]:
        """Encoded images → prepared float32 items (C, H, W) and each image's original size,
        decoded in parallel in the pool (or together on the GPU)."""
        loop = asyncio.get_running_loop()
        preprocess = self.bundle.pipeline.preprocess
        if not isinstance(preprocess, ImagePreprocess):
            raise TypeError(f"model {self.name!r} takes texts, not images")
        if self.prepare_on_gpu:
            pixels = self.max_image_pixels
            try:
                with stage("compute_input"):
                    batch, on_gpu_sizes = await loop.run_in_executor(
                        self.decode_pool, prepare_on_device, preprocess, images, "cuda", pixels
                    )
            except ItemDecodeError as err:
                raise ItemError(err.index, str(err)) from err
            return list(batch), on_gpu_sizes
        tasks = [loop.run_in_executor(self.decode_pool, self._prepare_one, data) for data in images]
        with stage("compute_input"):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        prepared: list[Item] = []
        sizes: list[Size] = []
        for index, result in enumerate(results):
            if isinstance(result, ImageDecodeError):
                raise ItemError(index, str(result)) from result
            if isinstance(result, BaseException):
                raise result
            prepared.append(result[0])
            sizes.append(result[1])
        if self.native:  # admitted at the training size; an image's own may hold more
            self.memory.reserve(
                max(0, sum(item.nbytes for item in prepared) - len(prepared) * self.item_bytes)
            )
        return prepared, sizes

    def _prepare_one(self, data: bytes) -> tuple[np.ndarray, Size]:
        preprocess = self.bundle.pipeline.preprocess
        assert isinstance(preprocess, ImagePreprocess)
        return preprocess.prepare(data, self.max_image_pixels)

    async def prepare_texts(self, texts: Sequence[bytes | str]) -> list[Item]:
        """UTF-8 texts → token id rows, tokenized in the pool (the tokenizer is Rust and releases
        the GIL); the first unusable text is named by its index."""
        preprocess = self.bundle.pipeline.preprocess
        if not isinstance(preprocess, TextPreprocess):
            raise TypeError(f"model {self.name!r} takes images, not texts")
        with stage("compute_input"):
            return await asyncio.get_running_loop().run_in_executor(
                self.decode_pool, tokenize, preprocess, texts
            )

    async def infer(self, items: Sequence[Item], timeout: float | None) -> np.ndarray:
        """The network's raw outputs for prepared items, one row each, in order."""
        started = time.perf_counter_ns()
        rows, waited = await self.batcher.submit_timed(items, timeout)
        timing = current_timing()
        if timing is not None:
            queued = int(waited * 1e9)
            timing.queue += queued
            timing.compute_infer += time.perf_counter_ns() - started - queued
        return stack_items(rows)

    def postprocess(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return self.bundle.pipeline.postprocess(outputs, sizes)

    def _run_batch(self, items: list[Item]) -> list[np.ndarray]:
        started = time.perf_counter()
        # token id rows of many lengths run in groups of similar length
        text = self.text
        rows = run_by_length(items, self.runtime.run) if text else list(self.runtime.run(stack_items(items)))  # type: ignore[arg-type]
        self.metrics.batch_ran(len(items), time.perf_counter() - started)
        return rows


def tokenize(preprocess: TextPreprocess, texts: Sequence[bytes | str]) -> list[Item]:
    items: list[Item] = []
    for index, text in enumerate(texts):
        try:
            items.append(preprocess.prepare(text))
        except TextError as err:
            raise ItemError(index, str(err)) from err
    return items
