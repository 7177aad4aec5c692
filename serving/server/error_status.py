"""From what went wrong to the gRPC status a client sees, and one way to run every call.

Each error type in `serving/` maps to exactly one status code; its message says what was wrong and
with which input. Anything unexpected is INTERNAL, logged with its traceback, and never crashes
the server or touches another request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc

from serving.bundle.quoting import clip
from serving.server.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from serving.server.feedback_store import FeedbackError, FeedbackFullError, FeedbackOffError
from serving.server.memory import MemoryBudgetError
from serving.server.prometheus import ServerMetrics
from serving.server.repository import (
    DrainingError,
    InvalidModelNameError,
    ModelControlError,
    ModelLoadingError,
    ModelNotFoundError,
    ModelRepository,
)
from serving.server.served_model import ItemError, ServedModel, TooManyItemsError
from serving.server.statistics import timed_call
from serving.server.tensors import TensorError

__all__ = [
    "CallError",
    "RequestError",
    "TaskMismatchError",
    "answer",
    "call_model",
    "grpc_answer",
    "status_for",
]

log = logging.getLogger(__name__)
R = TypeVar("R")


class RequestError(ValueError):
    """The request itself is malformed (gRPC: INVALID_ARGUMENT)."""


class TaskMismatchError(RuntimeError):
    """The model answers a different task than the call asks for (gRPC: FAILED_PRECONDITION)."""


_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (InvalidModelNameError, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelLoadingError, grpc.StatusCode.UNAVAILABLE),
    (DrainingError, grpc.StatusCode.UNAVAILABLE),
    (ModelControlError, grpc.StatusCode.FAILED_PRECONDITION),
    (BatcherClosedError, grpc.StatusCode.UNAVAILABLE),
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (MemoryBudgetError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (TaskMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (FeedbackOffError, grpc.StatusCode.FAILED_PRECONDITION),
    (FeedbackFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FeedbackError, grpc.StatusCode.INVALID_ARGUMENT),
    (ItemError, grpc.StatusCode.INVALID_ARGUMENT),
    (TooManyItemsError, grpc.StatusCode.INVALID_ARGUMENT),
    (TensorError, grpc.StatusCode.INVALID_ARGUMENT),
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
]


class RefusalLog:
    """One log line per refused call (level, code, model, reason, clipped), at most `per_second` a
    second: past that, refusals are counted and the next line that gets through says how many were
    not logged, so a flood of bad requests cannot fill the disk."""

    def __init__(self, per_second: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.clock = per_second, clock
        self.tokens, self.updated, self.suppressed = per_second, clock(), 0

    def log(self, code: grpc.StatusCode, model: str, reason: str) -> None:
        now = self.clock()
        self.tokens = min(self.per_second, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            self.suppressed += 1
            return
        self.tokens -= 1
        extra = {"code": code.name, "model": clip(model, 120), "reason": clip(reason, 300)}
        if self.suppressed:
            extra["not_logged_since"] = self.suppressed
            self.suppressed = 0
        log.warning("refused a call", extra=extra)


refusals = RefusalLog()


def status_for(err: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in _CODES:
        if isinstance(err, kind):
            return code, clip(str(err))
    log.error("internal error answering a request", exc_info=err)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(err).__name__}); the server logged it"


class CallError(Exception):
    """A call refused or failed, protocol-neutral: the gRPC status (each front end maps it to its own
    protocol: HTTP's status codes for V2 over REST) and the message the client reads."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


async def call_model(
    repository: ModelRepository,
    metrics: ServerMetrics,
    model: str,
    version: str,
    work: Callable[[ServedModel], Awaitable[R]],
) -> R:
    """Run `work` on the served model under a lease; a failure becomes a `CallError`.

    Every call is counted and timed under the model that served it, whatever its outcome (Prometheus
    and Triton's statistics alike); calls that reached no served version count under model "" (a
    client must not be able to mint a metric series per made-up model name)."""
    started, code, counted = time.perf_counter(), grpc.StatusCode.OK, None

    def count() -> None:
        (counted or metrics.for_model("", "")).answered(time.perf_counter() - started, code.name)

    with timed_call():
        try:
            with repository.memory.call(), repository.lease(model, version) as served:
                counted = served.metrics
                result = await work(served)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            count()
            raise
        except Exception as err:
            code, message = status_for(err)
            count()  # before the status leaves: a client that reads /metrics next must see this call
            if code != grpc.StatusCode.INTERNAL:  # an internal error was logged with its traceback
                refusals.log(code, model, message)
            raise CallError(code, message) from None
        count()
    return result


async def answer(
    repository: ModelRepository,
    metrics: ServerMetrics,
    context: grpc.aio.ServicerContext,
    model: str,
    version: str,
    work: Callable[[ServedModel], Awaitable[R]],
) -> R:
    """`call_model` for a gRPC servicer: a `CallError` aborts the call with its status."""
    return await grpc_answer(context, call_model(repository, metrics, model, version, work))


async def grpc_answer(context: grpc.aio.ServicerContext, call: Awaitable[R]) -> R:
    """The result of `call`, or its `CallError` as the gRPC status it names."""
    try:
        return await call
    except CallError as err:
        await _abort(context, err.code, err.message)


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this line is for the type checker
