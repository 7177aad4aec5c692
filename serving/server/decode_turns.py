"""Fair turns in the shared decode pool, each image's decoded memory budgeted before it decodes.

Every model's requests share one pool of decode threads. Queued there first come, first served, one
request of 64 huge PNGs held the next one-JPEG call for 14 s. Here a request's items wait in its own
line, and a thread that comes free takes the next item of the request with the fewest items running
(of those, the one served longest ago): a new request's first item goes before anyone's second, so
a call waits for one running item at most, not for the other requests' whole backlog. No more items
are handed to the pool than it has threads, so nothing queues behind the turns.

In its thread, an item first reads what it will hold (`Job.measure`: an image's header, nothing
decoded), then takes that from the memory budget and only then does its work (`Job.finish`), giving
it back as soon as that is done. An item that can never fit beside what its request already holds is
refused (RESOURCE_EXHAUSTED). One that does not fit now gives its thread back and waits here, its
request's line with it, while other requests' items go on; it goes when decodes in flight have given
back enough, and is refused at once where none is running (what holds the budget then are calls,
which may themselves be waiting). So the budget bounds decoding memory whatever the thread count.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.server.memory import CallReservation, MemoryBudget, MemoryBudgetError, MiB

__all__ = ["DecodeTurns", "Job"]


class Job(Protocol):
    """One item's work in a decode thread."""

    def measure(self) -> int:
        """The bytes `finish` will hold at most; reads no more than it must (an image's header)."""
        ...

    def finish(self) -> Any:
        """The work itself, called once, after `measure`."""
        ...

    def describe(self) -> str:
        """What the item is, for a refusal's message (`a 6300×6300 RGB PNG`)."""
        ...


_NEEDS_ROOM = object()


@dataclass(eq=False)
class _Request:
    jobs: Sequence[Job]
    memory: MemoryBudget
    call: CallReservation | None
    done: asyncio.Future[None]
    results: list[Any]
    waiting: deque[int]  # items not yet handed to a thread, in order
    running: int = 0
    parked: list[tuple[int, int]] = field(default_factory=list)  # (item, bytes) waiting for room, in order
    granted: dict[int, int] = field(default_factory=dict)  # item → bytes taken for it before its turn
    served: int = 0  # when it last had a turn (`DecodeTurns._clock`)
    failed: bool = False

    def finished(self) -> bool:
        return self.running == 0 and not self.parked and not self.waiting


class DecodeTurns:
    """The turns for one pool of `threads` decode threads. Whoever makes the pool makes this once
    (it knows the thread count) and hands it to every model, as the threads are shared."""

    def __init__(self, pool: Executor, threads: int) -> None:
        self.pool, self.threads = pool, threads
        self._running = 0
        self._requests: list[_Request] = []  # with items waiting, parked, or running
        self._clock = itertools.count(1)

    async def run(self, jobs: Sequence[Job], memory: MemoryBudget) -> list[Any]:
        """Each job's result, or the exception it raised, in order. After a failure no further item
        of the request starts (its answer is that failure). Cancelling withdraws the items not started.
        Call it from the one event loop that uses this pool."""
        if not jobs:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(
            jobs, memory, memory.current(), loop.create_future(), [None] * len(jobs), deque(range(len(jobs)))
        )
        self._requests.append(request)
        self._pump()
        try:
            await request.done
        finally:
            if not request.finished():  # cancelled: what has not started never will
                self._withdraw(request)
        return request.results

    def _withdraw(self, request: _Request) -> None:
        request.waiting.clear()
        request.parked.clear()
        for taken in request.granted.values():
            request.memory.give_back(taken)
        request.granted.clear()
        request.failed = True
        if request.running == 0 and request in self._requests:
            self._requests.remove(request)
        self._pump()

    def _pump(self) -> None:
        """Give parked items the room that came free, then fill the free threads, fairly."""
        for request in [r for r in self._requests if r.parked]:
            self._unpark(request)
        while self._running < self.threads:
            ready = [r for r in self._requests if r.waiting and (not r.parked or r.waiting[0] in r.granted)]
            if not ready:
                return
            request = min(ready, key=lambda r: (r.running, r.served))
            self._start(request, request.waiting.popleft())

    def _unpark(self, request: _Request) -> None:
        """Room for the request's parked items, first to last, as far as it goes; none, and nothing
        running to make any: refused."""
        granted = []
        while request.parked:
            index, nbytes = request.parked[0]
            taken = request.memory.take(nbytes, request.call)
            if taken is None:
                break
            request.parked.pop(0)
            request.granted[index] = taken
            granted.append(index)
        request.waiting.extendleft(reversed(granted))  # before the items not yet tried, in order
        if not request.parked or granted:
            return
        index, nbytes = request.parked[0]
        if request.memory.decoding == 0:  # nothing running will make room: the calls hold it
            self._fail(
                request,
                index,
                MemoryBudgetError(
                    f"item {index}: decoding it ({request.jobs[index].describe()}) holds "
                    f"{nbytes / MiB:,.1f} MiB and the server {request.memory.describe()} for requests "
                    "in flight (max_inflight_mb); retry, or send fewer or smaller images per request"
                ),
            )
            self._settle(request)

    def _start(self, request: _Request, index: int) -> None:
        self._running += 1
        request.running += 1
        request.served = next(self._clock)
        granted = request.granted.pop(index, None)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self.pool, self._work, request, index, granted)
        except RuntimeError as err:  # the pool is shut down (the server is stopping)
            future = loop.create_future()
            future.set_exception(err)
        future.add_done_callback(lambda f: self._landed(request, index, granted, f))

    @staticmethod
    def _work(request: _Request, index: int, granted: int | None) -> tuple[Any, int]:
        """In a decode thread: (the result, an exception, or `_NEEDS_ROOM`; the bytes taken)."""
        job, taken = request.jobs[index], granted
        try:
            if request.failed:
                return None, taken or 0
            nbytes = job.measure()
            if taken is None:
                if not request.memory.fits_ever(nbytes, request.call):
                    held = request.call.nbytes if request.call is not None else 0
                    return MemoryBudgetError(
                        f"item {index}: decoding it ({job.describe()}) holds {nbytes / MiB:,.1f} MiB, "
                        f"which can never fit in the server's {request.memory.limit / MiB:,.0f} MiB for "
                        f"requests in flight (max_inflight_mb) beside the {held / MiB:,.1f} MiB this "
                        "request holds already; send a smaller image"
                    ), 0
                taken = request.memory.take(nbytes, request.call)
                if taken is None:
                    return _NEEDS_ROOM, nbytes
            return job.finish(), taken
        except Exception as err:
            return err, taken or 0

    def _landed(
        self, request: _Request, index: int, granted: int | None, future: asyncio.Future[tuple[Any, int]]
    ) -> None:
        self._running -= 1
        request.running -= 1
        outcome: Any
        try:
            outcome, nbytes = future.result()
        except BaseException as err:  # cancelled in the pool's queue (it shut down), or interrupted
            outcome, nbytes = RuntimeError(f"the decode pool stopped before this item was done ({err!r})"), 0
            request.memory.give_back(granted or 0)
        if outcome is _NEEDS_ROOM:
            outcome = None
            if not request.failed:
                bisect.insort(request.parked, (index, nbytes))
                self._unpark(request)
        else:
            request.memory.give_back(nbytes)
        if isinstance(outcome, BaseException):
            self._fail(request, index, outcome)
        elif not request.failed:
            request.results[index] = outcome
        self._settle(request)
        self._pump()

    def _fail(self, request: _Request, index: int, error: BaseException) -> None:
        """The request's answer is a failure: no further item of it starts."""
        request.results[index] = error
        request.failed = True
        request.waiting.clear()
        request.parked.clear()
        for taken in request.granted.values():
            request.memory.give_back(taken)
        request.granted.clear()

    def _settle(self, request: _Request) -> None:
        if request.finished() and request in self._requests:
            self._requests.remove(request)
            if not request.done.done():
                request.done.set_result(None)
