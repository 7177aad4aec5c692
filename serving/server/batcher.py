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
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "BatcherClosedError",
    "BatchingConfig",
    "DeadlineExceededError",
    "DynamicBatcher",
    "QueueFullError",
]

log = logging.getLogger(__name__)

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


@dataclass(slots=True)
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
        self._wake = asyncio.Event()  # set by an arrival, by a batch finishing, by the delay's timer
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
        self._wake.set()
        futures = [one.future for one in pending]
        try:
            # one item (the common request) awaits its future itself: no gathering future
            outputs = [await futures[0]] if len(futures) == 1 else list(await asyncio.gather(*futures))
            return outputs, max(one.started for one in pending) - now
        finally:
            for future in futures:
                future.cancel()  # no-op for the finished ones; withdraws the rest after an error

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        running: asyncio.Future[None] | None = None
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
                self._wake.clear()
                if self._queue.empty():
                    timer = loop.call_later(remaining, self._wake.set) if remaining > 0 else None
                    try:
                        await self._wake.wait()
                    finally:
                        if timer is not None:
                            timer.cancel()
            if running is not None:
                await running  # a full batch waits for the runtime here
            self._forming = 0
            running = self._start(loop, batch)

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[I, O]]) -> asyncio.Future[None]:
        """Run `batch` in the executor; the returned future is done once its callers have their
        outputs. The inference thread hands the outputs back with one callback for the whole batch."""
        assert self._queue is not None
        done: asyncio.Future[None] = loop.create_future()
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
            self._release(batch, done)
            return done
        if self.on_batch is not None:
            try:
                self.on_batch(len(live))
            except Exception:  # a counter must never stop the queue
                log.exception("on_batch failed")

        def run() -> None:  # on the inference thread
            answer: Sequence[O | Exception] | Exception
            try:
                outputs = self.run_batch([p.item for p in live])
                if len(outputs) != len(live):
                    raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(live)} inputs")
                answer = outputs
            except BaseException as err:  # the whole batch failed: every caller hears why
                answer = (
                    err if isinstance(err, Exception) else RuntimeError(f"the batch was interrupted: {err!r}")
                )
            hand_back(answer)

        def hand_back(answer: Sequence[O | Exception] | Exception) -> None:  # from any thread
            with contextlib.suppress(RuntimeError):  # the event loop is closed: no caller is left
                loop.call_soon_threadsafe(self._answer, live, answer, batch, done)

        def unless_run(ran: Future[None]) -> None:  # a batch the executor dropped is answered too
            if ran.cancelled():
                hand_back(BatcherClosedError("the model stopped before this batch could run; retry"))

        try:
            self.executor.submit(run).add_done_callback(unless_run)
        except RuntimeError as err:  # the executor is shut down
            self._answer(live, err, batch, done)
        return done

    def _answer(
        self,
        live: list[_Pending[I, O]],
        outputs: Sequence[O | Exception] | Exception,
        batch: list[_Pending[I, O]],
        done: asyncio.Future[None],
    ) -> None:
        for index, pending in enumerate(live):
            if pending.future.done():
                continue
            output = outputs if isinstance(outputs, Exception) else outputs[index]
            if isinstance(output, Exception):
                pending.future.set_exception(output)
            else:
                pending.future.set_result(output)
        self._release(batch, done)

    def _release(self, batch: list[_Pending[I, O]], done: asyncio.Future[None]) -> None:
        """Once per batch: a second call (a batch answered twice) finds it emptied and does nothing."""
        assert self._queue is not None
        for _ in batch:
            self._queue.task_done()
        batch.clear()
        if not done.done():
            done.set_result(None)
        self._wake.set()  # the runtime is free: a waiting batch may start
