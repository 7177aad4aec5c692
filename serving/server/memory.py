"""A memory budget for requests in flight: what they sent, what their prepared items hold, and what
each image holds while it decodes.

A request's cost at admission is what it sent (its payload) plus what preparing it will hold (each
item's float32 tensor, or token ids): a 73-byte PNG becomes a 588 KiB tensor at 224 px. `admit`
reserves that for the call, released when the call ends, answered or not; a request that does not fit
in what is left is refused at once with RESOURCE_EXHAUSTED, before any work is spent on it.

Decoding holds far more than either: a 1 MB PNG may declare 40 megapixels, 160 MB once decoded. So
each image's decode is budgeted on its own, from its header, before a pixel is decoded (`take`, from
a decode thread), and given back the moment that item is prepared (`give_back`). `decoding` is the
part of `used` that decodes hold: it always comes back on its own, so a decode that finds no room may
wait for it (`serving.server.decode_turns`); where none is running, nothing would make room soon.

The call's reservation is opened by `MemoryBudget.call()` around a call's handling (a context
variable carries it), so every admission inside the call adds to it and one release frees all of it.
Decode threads take and give back too, so the arithmetic holds a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CallReservation", "MemoryBudget", "MemoryBudgetError"]

MiB = 1 << 20


class MemoryBudgetError(RuntimeError):
    """The requests in flight hold the server's memory budget (gRPC: RESOURCE_EXHAUSTED)."""


class CallReservation:
    """What one call holds in the budget until it ends (its payload, its prepared items)."""

    def __init__(self) -> None:
        self.nbytes = 0


_CURRENT: ContextVar[CallReservation | None] = ContextVar("memory_reservation", default=None)


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.decoding = 0  # of `used`: held by decodes running now
        self._lock = threading.Lock()

    @contextmanager
    def call(self) -> Iterator[None]:
        """Everything reserved inside is released when the block ends."""
        reservation = CallReservation()
        token = _CURRENT.set(reservation)
        try:
            yield
        finally:
            _CURRENT.reset(token)
            with self._lock:
                self.used -= reservation.nbytes

    @staticmethod
    def current() -> CallReservation | None:
        """The running call's reservation; None outside a call (a benchmark calling the engine
        directly), where nothing is counted."""
        return _CURRENT.get()

    def reserve(self, nbytes: int) -> None:
        """Hold `nbytes` for the current call, or refuse it now."""
        reservation = _CURRENT.get()
        if reservation is None:
            return
        with self._lock:
            if self.used + nbytes > self.limit:
                raise MemoryBudgetError(
                    f"the request needs {nbytes / MiB:,.1f} MiB to prepare and the server holds "
                    f"{self.used / MiB:,.1f} of its {self.limit / MiB:,.0f} MiB for requests in flight "
                    "(max_inflight_mb); retry, or send fewer or smaller items per request"
                )
            self.used += nbytes
            reservation.nbytes += nbytes

    def hold(self, nbytes: int) -> None:
        """Count `nbytes` the current call holds already (a native-resolution item, larger than
        admitted), room or not: the memory exists, and its decode was budgeted."""
        reservation = _CURRENT.get()
        if reservation is None or nbytes <= 0:
            return
        with self._lock:
            self.used += nbytes
            reservation.nbytes += nbytes

    def fits_ever(self, nbytes: int, call: CallReservation | None) -> bool:
        """Whether `nbytes` fit beside what `call` holds once everything else has left."""
        return call is None or nbytes + call.nbytes <= self.limit

    def take(self, nbytes: int, call: CallReservation | None) -> int | None:
        """Hold `nbytes` for one decode if they fit now (from any thread): what was taken (0 outside
        a call, where nothing is counted), or None where there is no room."""
        if call is None:
            return 0
        with self._lock:
            if nbytes and self.used + nbytes > self.limit:
                return None
            self.used += nbytes
            self.decoding += nbytes
            return nbytes

    def give_back(self, nbytes: int) -> None:
        """A decode is done: what it took is free again."""
        if nbytes:
            with self._lock:
                self.used -= nbytes
                self.decoding -= nbytes

    def describe(self) -> str:
        """`holds 80.0 of its 256 MiB`: the state, for a refusal's message."""
        return f"holds {self.used / MiB:,.1f} of its {self.limit / MiB:,.0f} MiB"
