"""Triton's per-model statistics: cumulative counts and nanoseconds since a model version loaded.

Fed from the same places as the Prometheus series (`ModelMetrics`), so `ModelStatistics` and
`/metrics` agree by construction. A request's parts (preparing its inputs, waiting in the queue,
running, encoding the answer) are noted on a `RequestTiming` that lives in a context variable for
the call, so the code that prepares or infers needs no extra argument to report them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Duration", "ModelStatistics", "RequestTiming", "current_timing", "stage", "timed_call"]


@dataclass
class Duration:
    """How many times something happened, and how long it took in all."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass
class RequestTiming:
    """The parts of one request, in nanoseconds."""

    compute_input: int = 0
    queue: int = 0
    compute_infer: int = 0
    compute_output: int = 0


_timing: ContextVar[RequestTiming | None] = ContextVar("request_timing", default=None)


@contextmanager
def timed_call() -> Iterator[RequestTiming]:
    """Give the call (and everything it awaits) its own `RequestTiming`."""
    timing = RequestTiming()
    token = _timing.set(timing)
    try:
        yield timing
    finally:
        _timing.reset(token)


def current_timing() -> RequestTiming | None:
    return _timing.get()


class stage:  # noqa: N801  # used as a function: `with stage("compute_input"):`
    """Add the time spent inside to the current request's `name` part (nothing outside a call).
    A class, not a generator: it wraps parts of every request, and costs a third as much."""

    __slots__ = ("name", "started")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.perf_counter_ns()

    def __exit__(self, *_: object) -> None:
        timing = _timing.get()
        if timing is not None:
            setattr(timing, self.name, getattr(timing, self.name) + time.perf_counter_ns() - self.started)


@dataclass
class ModelStatistics:
    """Triton's `ModelStatistics` for one model version: requests (success, fail, and the parts of
    the successful ones), items inferred, batches run, and per batch size their compute time."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)

    def batch_ran(self, size: int, ns: int) -> None:
        """Called on the inference thread, the only writer of these three fields."""
        self.execution_count += 1
        self.inference_count += size
        self.batches.setdefault(size, Duration()).add(ns)

    def answered(self, ok: bool, ns: int, timing: RequestTiming | None) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        if not ok:
            self.fail.add(ns)
            return
        self.success.add(ns)
        timing = timing or RequestTiming()
        self.compute_input.add(timing.compute_input)
        self.queue.add(timing.queue)
        self.compute_infer.add(timing.compute_infer)
        self.compute_output.add(timing.compute_output)
