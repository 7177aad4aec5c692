"""A memory budget for requests in flight: reserved at admission, before anything is decoded.

A request's cost is what it sent (its payload) plus what preparing it will hold (each item's float32
tensor, or token ids): a 73-byte PNG becomes a 588 KiB tensor at 224 px. `admit` reserves that cost
for the call and the reservation is released when the call ends, answered or not; a request that does
not fit in what is left is refused at once with RESOURCE_EXHAUSTED, before any work is spent on it.

The reservation belongs to the call: `MemoryBudget.call()` opens it around a call's handling (a
context variable carries it), so every admission inside the call adds to it and one release frees
all of it. Everything runs on the event loop, so the arithmetic needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["MemoryBudget", "MemoryBudgetError"]


class MemoryBudgetError(RuntimeError):
    """The requests in flight hold the server's memory budget (gRPC: RESOURCE_EXHAUSTED)."""


class _Reservation:
    def __init__(self) -> None:
        self.nbytes = 0


_CURRENT: ContextVar[_Reservation | None] = ContextVar("memory_reservation", default=None)


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0

    @contextmanager
    def call(self) -> Iterator[None]:
        """Everything reserved inside is released when the block ends."""
        reservation = _Reservation()
        token = _CURRENT.set(reservation)
        try:
            yield
        finally:
            _CURRENT.reset(token)
            self.used -= reservation.nbytes

    def reserve(self, nbytes: int) -> None:
        """Hold `nbytes` for the current call, or refuse it now."""
        reservation = _CURRENT.get()
        if reservation is None:  # outside a call (a benchmark calling the engine directly): unbounded
            return
        if self.used + nbytes > self.limit:
            raise MemoryBudgetError(
                f"the request needs {nbytes / 2**20:,.1f} MiB to prepare and the server holds "
                f"{self.used / 2**20:,.1f} of its {self.limit / 2**20:,.0f} MiB for requests in flight "
                "(max_inflight_mb); retry, or send fewer or smaller items per request"
            )
        self.used += nbytes
        reservation.nbytes += nbytes
