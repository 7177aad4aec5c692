"""Dynamic batching: many callers' items gathered into batches for one model.

A batch closes when it holds `max_batch_size` items or when its first item has waited
`max_queue_delay_us` microseconds since it arrived (Triton's semantics), whichever comes first. The
batch runs in an executor, never on the event loop. While one batch runs, the next one keeps
gathering, and is handed over the moment the runtime is free: the model never waits on the queue
when work is waiting, and a busy model gets fuller batches. The queue is bounded: past it,
`submit` fails at once with `QueueFullError`. An item whose deadline has passed is answered
`DeadlineExceededError` and never run.

The batch function returns one output per input, in order; an output that is an `Exception`
fails that item alone, so one bad input never fails its batch neighbours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "BatcherClosedError",
    "BatchingConfig",
    "DeadlineExceededError",
    "DynamicBatcher",
    "QueueFullError",
]

I = TypeVar("I")  # noqa: E741  # the conventional name of an input type variable
O = TypeVar("O")  # noqa: E741


class QueueFullError(Exception):
    """The queue holds `max_queue_size` items already (gRPC: RESOURCE_EXHAUSTED)."""


class DeadlineExceededError(Exception):
    """The item's deadline passed before it could run (gRPC: DEADLINE_EXCEEDED)."""


class BatcherClosedError(Exception):
    """The batcher is draining or stopped and takes no new items (gRPC: UNAVAILABLE)."""


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 32
    max_queue_delay_us: int = 2000
    max_queue_size: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue_delay_us < 0 or self.max_queue_size < 1:
            raise ValueError(f"invalid batching config {self}: sizes must be ≥ 1 and the delay ≥ 0")


@dataclass
class _Pending(Generic[I, O]):
    item: I
    arrived: float  # time.monotonic() seconds
    deadline: float | None
    future: asyncio.Future[O]
    started: float = 0.0  # time.monotonic() seconds when its batch began to run


class DynamicBatcher(Generic[I, O]):
    """Gathers `submit`ted items into batches for `run_batch`; use `async with` or start/stop."""

    def __init__(
        self,
        run_batch: Callable[[list[I]], Sequence[O | Exception]],
        config: BatchingConfig | None = None,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch, self.config = run_batch, config or BatchingConfig()
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending[I, O]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._arrived = asyncio.Event()
        self._forming = 0

    async def __aenter__(self) -> DynamicBatcher[I, O]:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.config.max_queue_size)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Refuse new items, finish every queued one, then end the loop."""
        self._closed = True
        if self._queue is not None:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def depth(self) -> int:
        """Items waiting: queued, or gathered into the batch that has not started to run."""
        return self._forming + (0 if self._queue is None else self._queue.qsize())

    async def submit(self, item: I, timeout: float | None = None) -> O:
        """The output for `item`; `timeout` (seconds) bounds how long it may wait to run."""
        (output,) = await self.submit_many([item], timeout)
        return output

    def check_room(self, count: int) -> None:
        """Raise what `submit_many` would for `count` items, without queueing anything."""
        if self._closed or self._queue is None:
            raise BatcherClosedError("the model is shutting down or not started; retry on another instance")
        if count > self.config.max_queue_size - self.depth:
            raise QueueFullError(
                f"queue is full ({self.depth} of {self.config.max_queue_size} items waiting, "
                f"{count} more asked); retry later"
            )

    async def submit_many(self, items: Sequence[I], timeout: float | None = None) -> list[O]:
        """Outputs for `items`, in order. All are queued or none: a request never half-enters a full
        queue. They may run in different batches. Cancelling the caller withdraws the unrun ones."""
        outputs, _ = await self.submit_timed(items, timeout)
        return outputs

    async def submit_timed(self, items: Sequence[I], timeout: float | None = None) -> tuple[list[O], float]:
        """`submit_many`'s outputs, and the seconds the request waited in the queue (until the batch
        holding its last item began to run)."""
        self.check_room(len(items))
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        pending = [_Pending(item, now, deadline, loop.create_future()) for item in items]
        for one in pending:
            self._queue.put_nowait(one)
        self._arrived.set()
        futures = [one.future for one in pending]
        try:
            outputs = list(await asyncio.gather(*futures))
            return outputs, max(one.started for one in pending) - now
        finally:
            for future in futures:
                future.cancel()  # no-op for the finished ones; withdraws the rest after an error

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        running: asyncio.Task[None] | None = None
        while True:
            batch = [await self._queue.get()]
            self._forming = 1
            closes_at = batch[0].arrived + self.config.max_queue_delay_us / 1e6
            while len(batch) < self.config.max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    self._forming = len(batch)
                    continue
                except asyncio.QueueEmpty:
                    pass
                busy = running is not None and not running.done()
                remaining = closes_at - time.monotonic()
                if remaining <= 0 and not busy:
                    break
                # Wake on an arrival, on the delay, or when the running batch frees the runtime.
                # (An event, not queue.get(): a timed-out get could swallow an item.)
                self._arrived.clear()
                if self._queue.empty():
                    waiters: set[asyncio.Future[object]] = {loop.create_task(self._arrived.wait())}
                    if busy:
                        assert running is not None
                        waiters.add(running)  # type: ignore[arg-type]
                    await asyncio.wait(
                        waiters,
                        timeout=remaining if remaining > 0 else None,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for waiter in waiters:
                        if waiter is not running:
                            waiter.cancel()
            if running is not None:
                await running  # a full batch waits for the runtime here
            self._forming = 0
            running = loop.create_task(self._run_and_release(loop, batch))

    async def _run_and_release(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[I, O]]) -> None:
        assert self._queue is not None
        try:
            await self._run(loop, batch)
        finally:
            for _ in batch:
                self._queue.task_done()

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[I, O]]) -> None:
        now = time.monotonic()
        live = []
        for pending in batch:
            if pending.future.done():  # the caller gave up (cancelled)
                continue
            if pending.deadline is not None and pending.deadline <= now:
                pending.future.set_exception(DeadlineExceededError("deadline passed while queued; not run"))
            else:
                pending.started = now
                live.append(pending)
        if not live:
            return
        if self.on_batch is not None:
            self.on_batch(len(live))
        try:
            outputs = await loop.run_in_executor(self.executor, self.run_batch, [p.item for p in live])
            if len(outputs) != len(live):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(live)} inputs")
        except Exception as err:  # the whole batch failed: every caller hears why
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(err)
            return
        for pending, output in zip(live, outputs, strict=True):
            if pending.future.done():
                continue
            if isinstance(output, Exception):
                pending.future.set_exception(output)
            else:
                pending.future.set_result(output)
