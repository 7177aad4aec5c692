"""One served model version: its bundle, its runtime, its batch queue, and who is using it.

It walks the bundle's request flow (`serving.bundle.flow`) with the server's parts: items are
decoded and prepared in a shared thread pool (several at once, off the event loop, taking fair turns
with other requests' items, each image's decoded size held in the memory budget while it decodes:
`serving.server.decode_turns`), or, for a model PyTorch runs on CUDA, decoded, resized and
normalized on the GPU (`device_images`); prepared items go through the model's `DynamicBatcher`,
whose batches run in the model's own inference thread.
A `Lease` counts a request in flight, so a retired version is stopped only
after the requests that chose it have their answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.bundle import Bundle
from serving.bundle.flow import Input, Prepared, answer
from serving.bundle.images import ImageDecodeError, ImageHeader
from serving.bundle.pipeline import ImagePreprocess, Size, stack_items
from serving.bundle.runtimes import Device, GraphMode, Runtime, RuntimeName, buckets
from serving.bundle.text_preprocess import TextError, TextPreprocess
from serving.server.batcher import BatchingConfig, DynamicBatcher
from serving.server.codecs import codec_for
from serving.server.decode_turns import DecodeTurns, Job
from serving.server.memory import MemoryBudget
from serving.server.prometheus import ModelMetrics
from serving.server.statistics import current_timing, stage

__all__ = ["ItemError", "ServedModel", "TooManyItemsError"]

log = logging.getLogger(__name__)

Item = Any
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
        decode_turns: DecodeTurns,
        metrics: ModelMetrics,
        max_image_pixels: int,
        prepare_on_gpu: bool = False,
        graphs: GraphMode = "off",
        memory: MemoryBudget | None = None,
        cpu_graph: bool = True,
    ) -> None:
        self.bundle, self.metrics = bundle, metrics
        self.name, self.version = bundle.manifest.name, bundle.manifest.version
        self.task = bundle.manifest.task
        self.codec = codec_for(self.task)  # refuses a task this server cannot answer on the wire
        self.preprocess = pre = bundle.pipeline.preprocess
        # CUDA graphs need fixed shapes: a text batch's length varies with every batch, and so do
        # the images of a model that takes them at their own resolution (a segmenter's)
        fixed = -1 not in pre.item_shape
        on_gpu = device == "cuda" and runtime == "torch"
        self.graphs: GraphMode = graphs if on_gpu and fixed else "off"
        self.runtime: Runtime = bundle.runtime(
            runtime, device, self.graphs, batching.max_batch_size, cpu_graph
        )
        self.device = device
        self.prepare_on_gpu = prepare_on_gpu and on_gpu and pre.takes == "images"
        self.max_image_pixels = max_image_pixels
        self.turns = decode_turns  # shared with every model, as its pool is
        self.inference = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{self.name}-{self.version}")
        self.batcher: DynamicBatcher[Item, np.ndarray] = DynamicBatcher(
            self._run_batch, batching, self.inference
        )
        self.input_shape = ImageShape(*pre.item_shape) if pre.takes == "images" else None
        self.memory = memory or MemoryBudget(1 << 62)
        self.item_bytes = pre.item_bytes  # what one prepared item holds, counted before preparing
        self.native = pre.takes == "images" and not fixed
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def warm_up(self) -> None:
        """Run one batch of each size a caller is likely to see first (with CUDA graphs: every
        bucket, captured on the inference thread that will replay them), so no request pays for it."""
        largest = self.batcher.config.max_batch_size
        sizes = buckets(largest) if self.graphs != "off" else sorted({1, largest})
        for n in sizes:
            batch = self.preprocess.warm_up_batch(n)
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
        log.info("unloaded model", extra={"model": self.name, "version": self.version, "task": self.task})

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

    async def prepare(self, inputs: Sequence[Input]) -> tuple[list[Item], list[Size]]:
        """Encoded images or texts → prepared items and each one's original size, prepared in
        parallel in the pool, in fair turns with other requests (images of a CUDA model together on
        the GPU); the first unusable item is an `ItemError` naming its index."""
        if self.prepare_on_gpu:
            return await self._prepare_on_gpu(inputs)  # type: ignore[arg-type]
        pre = self.preprocess
        jobs: list[Job] = (
            [_PrepareImage(pre, data, self.max_image_pixels) for data in inputs]
            if isinstance(pre, ImagePreprocess)
            else [_PrepareText(pre, data) for data in inputs]
        )
        with stage("compute_input"):
            results = await self.turns.run(jobs, self.memory)
        for index, result in enumerate(results):  # after a failure, items not run hold None
            if isinstance(result, ImageDecodeError | TextError):
                raise ItemError(index, str(result)) from result
            if isinstance(result, BaseException):
                raise result
        prepared: list[Item] = [result.item for result in results]
        sizes: list[Size] = [result.size for result in results]
        if self.native:  # admitted at the training size; an image's own holds more (its decode was budgeted)
            self.memory.hold(sum(item.nbytes for item in prepared) - len(prepared) * self.item_bytes)
        return prepared, sizes

    async def _prepare_on_gpu(self, images: Sequence[bytes]) -> tuple[list[Item], list[Size]]:
        from serving.bundle.device_images import ItemDecodeError  # torch, on a GPU host

        preprocess = self.preprocess
        assert isinstance(preprocess, ImagePreprocess)  # prepare_on_gpu is for image models only
        job = _PrepareOnDevice(preprocess, images, self.max_image_pixels)
        with stage("compute_input"):
            (result,) = await self.turns.run([job], self.memory)
        if isinstance(result, ItemDecodeError):
            raise ItemError(result.index, str(result)) from result
        if isinstance(result, BaseException):
            raise result
        batch, sizes = result
        return list(batch), sizes

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
        return answer(self.bundle.pipeline, outputs, sizes)

    def _run_batch(self, items: list[Item]) -> list[np.ndarray]:
        started = time.perf_counter()
        rows = self.preprocess.run_items(items, self.runtime.run)
        self.metrics.batch_ran(len(items), time.perf_counter() - started)
        return rows


class _PrepareImage:
    """One image's turn in the decode pool: its header first (what decoding it holds), then the rest."""

    def __init__(self, preprocess: ImagePreprocess, data: Input, max_pixels: int) -> None:
        self.preprocess, self.data, self.max_pixels = preprocess, data, max_pixels
        self.header: ImageHeader | None = None

    def measure(self) -> int:
        if self.header is None:
            self.header = self.preprocess.read_header(self.data, self.max_pixels)
        return self.header.holds

    def finish(self) -> Prepared:
        header, self.header = self.header, None  # the decoded image goes with it
        assert header is not None  # measured first
        return self.preprocess.prepare_header(header)

    def describe(self) -> str:
        return f"a {self.header.describe()}" if self.header is not None else "an image"


class _PrepareText:
    """One text's turn: what it holds was counted at admission (what was sent, its token ids)."""

    def __init__(self, preprocess: TextPreprocess, data: Input) -> None:
        self.preprocess, self.data = preprocess, data

    def measure(self) -> int:
        return 0

    def finish(self) -> Prepared:
        return self.preprocess.prepare_item(self.data)

    def describe(self) -> str:
        return "a text"


class _PrepareOnDevice:
    """A request's images prepared together on the GPU: one turn, budgeted at what decoding them
    on the host would hold (PNGs decode there; JPEGs on the device)."""

    def __init__(self, preprocess: ImagePreprocess, images: Sequence[bytes], max_pixels: int) -> None:
        self.preprocess, self.images, self.max_pixels = preprocess, images, max_pixels

    def measure(self) -> int:
        from serving.bundle.device_images import ItemDecodeError

        total = 0
        for index, data in enumerate(self.images):
            try:
                header = self.preprocess.read_header(data, self.max_pixels)
            except ImageDecodeError as err:
                raise ItemDecodeError(index, err) from err
            total += header.holds
            header.image.close()
        return total

    def finish(self) -> tuple[Any, list[Size]]:
        from serving.bundle.device_images import prepare_on_device

        return prepare_on_device(self.preprocess, self.images, "cuda", self.max_pixels)

    def describe(self) -> str:
        return f"{len(self.images)} images prepared together on the GPU"
