"""The dynamic batcher, driven by real concurrent callers on a real event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from serving.server.batcher import (
    BatcherClosedError,
    BatchingConfig,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)

T = TypeVar("T")


class Doubler:
    """A model that doubles numbers, records its batch sizes, and fails on demand."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.gate = gate
        self.entered = threading.Event()  # set once a batch is inside the model

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=5)
        self.sizes.append(len(items))
        return [ValueError(f"item {i} is negative") if i < 0 else 2 * i for i in items]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=20))


def test_concurrent_items_share_batches_and_each_caller_gets_its_own_answer() -> None:
    model = Doubler()

    async def main() -> list[int]:
        async with DynamicBatcher(model, BatchingConfig(max_batch_size=4, max_queue_delay_us=200_000)) as b:
            return await asyncio.gather(*(b.submit(i) for i in range(10)))

    assert run(main()) == [2 * i for i in range(10)]
    assert model.sizes == [4, 4, 2]


def test_a_lone_item_runs_after_the_queue_delay() -> None:
    model = Doubler()

    async def main() -> tuple[int, float]:
        async with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_us=50_000)) as b:
            began = asyncio.get_running_loop().time()
            answer = await b.submit(21)
            return answer, asyncio.get_running_loop().time() - began

    answer, waited = run(main())
    assert answer == 42 and model.sizes == [1]
    assert waited >= 0.045


def test_the_delay_counts_from_arrival_so_an_item_that_waited_behind_a_busy_model_runs_next() -> None:
    gate = threading.Event()
    model = Doubler(gate)

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        async with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_us=200_000)) as b:
            first = asyncio.ensure_future(b.submit(1))
            await loop.run_in_executor(None, model.entered.wait)  # batch [1] is inside the model
            began = loop.time()
            second = asyncio.ensure_future(b.submit(2))
            await asyncio.sleep(0.5)  # the model is busy well past the second item's delay
            gate.set()
            answers = [await first, await second]
            return answers, loop.time() - began

    answers, waited = run(main())
    assert answers == [2, 4] and model.sizes == [1, 1]
    assert waited < 0.65, f"the second item waited {waited:.2f} s: its delay restarted when the model freed"


def test_one_bad_item_fails_alone() -> None:
    async def main() -> tuple[int | BaseException, ...]:
        config = BatchingConfig(max_batch_size=3, max_queue_delay_us=200_000)
        async with DynamicBatcher(Doubler(), config) as b:
            return await asyncio.gather(b.submit(1), b.submit(-1), b.submit(3), return_exceptions=True)

    good, bad, other = run(main())
    assert (good, other) == (2, 6)
    assert isinstance(bad, ValueError) and "item -1 is negative" in str(bad)


def test_a_failing_batch_tells_every_caller_and_the_next_batch_still_runs() -> None:
    calls = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return items

    async def main() -> tuple[tuple[int | BaseException, ...], int]:
        async with DynamicBatcher(flaky, BatchingConfig(max_batch_size=2, max_queue_delay_us=200_000)) as b:
            failed = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
            return failed, await b.submit(3)

    failed, later = run(main())
    assert all(isinstance(f, RuntimeError) and "model exploded" in str(f) for f in failed)
    assert later == 3


def test_a_model_returning_the_wrong_number_of_outputs_is_an_error() -> None:
    def first_only(items: list[int]) -> list[int]:
        return items[:1]

    async def main() -> tuple[int | BaseException, ...]:
        async with DynamicBatcher(first_only, BatchingConfig(2, 200_000)) as b:
            return await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) and "1 outputs for 2 inputs" in str(r) for r in run(main()))


def test_a_full_queue_refuses_at_once() -> None:
    gate = threading.Event()
    model = Doubler(gate)

    async def main() -> None:
        config = BatchingConfig(max_batch_size=1, max_queue_delay_us=0, max_queue_size=2)
        async with DynamicBatcher(model, config) as b:
            first = asyncio.ensure_future(b.submit(0))
            while not model.entered.is_set():  # the first item is inside the model, which is blocked
                await asyncio.sleep(0.01)
            queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFullError, match="queue is full"):
                await b.submit(3)
            gate.set()
            assert await first == 0 and [await q for q in queued] == [2, 4]

    run(main())


def test_an_item_past_its_deadline_is_never_run() -> None:
    gate = threading.Event()
    model = Doubler(gate)

    async def main() -> None:
        async with DynamicBatcher(model, BatchingConfig(max_batch_size=1, max_queue_delay_us=0)) as b:
            blocker = asyncio.ensure_future(b.submit(1))
            while not model.entered.is_set():
                await asyncio.sleep(0.01)
            late = asyncio.ensure_future(b.submit(2, timeout=0.01))
            await asyncio.sleep(0.1)
            gate.set()
            assert await blocker == 2
            with pytest.raises(DeadlineExceededError):
                await late

    run(main())
    assert model.sizes == [1]


def test_stop_finishes_queued_items_then_refuses_new_ones() -> None:
    async def main() -> None:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(Doubler(), BatchingConfig(4, 100_000))
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.stop()
        assert [p.result() for p in pending] == [0, 2, 4]
        with pytest.raises(BatcherClosedError):
            await batcher.submit(5)

    run(main())


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid batching config"):
        BatchingConfig(max_batch_size=0)


class Interrupted(BaseException):
    """Not an Exception: what a model thread may raise that `except Exception` lets through."""


def test_a_batch_that_raises_a_base_exception_fails_its_callers_and_the_queue_goes_on() -> None:
    calls: list[list[int]] = []

    def model(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise Interrupted("the model thread was interrupted")
        return [2 * i for i in items]

    async def main() -> int:
        async with DynamicBatcher(model, BatchingConfig(max_batch_size=1, max_queue_delay_us=0)) as b:
            with pytest.raises(RuntimeError, match="the batch was interrupted"):
                await b.submit(1)
            return await b.submit(2)  # the queue still runs batches, and the drain ends

    assert run(main()) == 4


class DroppingExecutor(ThreadPoolExecutor):
    """An executor shut down with `cancel_futures=True` between the submit and the run: the batch's
    future comes back cancelled and its function never runs."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.cancel()
        return future


def test_a_batch_its_executor_drops_is_answered_and_the_drain_still_ends() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(Doubler(), BatchingConfig(max_batch_size=2), DroppingExecutor(1))
        async with batcher as b:
            with pytest.raises(BatcherClosedError, match="stopped before this batch could run"):
                await b.submit(1)

    run(main())


def test_a_failing_batch_counter_never_stops_the_queue() -> None:
    def on_batch(size: int) -> None:
        raise ValueError("the metrics backend is gone")

    async def main() -> list[int]:
        config = BatchingConfig(max_batch_size=2, max_queue_delay_us=1000)
        async with DynamicBatcher(Doubler(), config, on_batch=on_batch) as b:
            return [await b.submit(1), await b.submit(2)]

    assert run(main()) == [2, 4]
