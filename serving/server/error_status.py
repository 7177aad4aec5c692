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
from serving.server.prometheus import ServerMetrics
from serving.server.repository import DrainingError, ModelLoadingError, ModelNotFoundError, ModelRepository
from serving.server.served_model import ItemError, ServedModel, TooManyItemsError
from serving.server.tensors import TensorError

__all__ = ["RequestError", "TaskMismatchError", "answer", "status_for"]

log = logging.getLogger(__name__)
R = TypeVar("R")


class RequestError(ValueError):
    """The request itself is malformed (gRPC: INVALID_ARGUMENT)."""


class TaskMismatchError(RuntimeError):
    """The model answers a different task than the call asks for (gRPC: FAILED_PRECONDITION)."""


_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (ModelLoadingError, grpc.StatusCode.UNAVAILABLE),
    (DrainingError, grpc.StatusCode.UNAVAILABLE),
    (BatcherClosedError, grpc.StatusCode.UNAVAILABLE),
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
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


def status_for(err: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in _CODES:
        if isinstance(err, kind):
            return code, clip(str(err))
    log.error("internal error answering a request", exc_info=err)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(err).__name__}); the server logged it"


async def answer(
    repository: ModelRepository,
    metrics: ServerMetrics,
    context: grpc.aio.ServicerContext,
    model: str,
    version: str,
    work: Callable[[ServedModel], Awaitable[R]],
) -> R:
    """Run `work` on the served model under a lease; failures become the matching gRPC status.

    Every call is counted and timed under the model that served it, whatever its outcome; calls
    that reached no served version count under model "" (a client must not be able to mint a
    metric series per made-up model name)."""
    started, code, counted = time.perf_counter(), grpc.StatusCode.OK, None

    def count() -> None:
        (counted or metrics.for_model("", "")).answered(time.perf_counter() - started, code.name)

    try:
        with repository.lease(model, version) as served:
            counted = served.metrics
            result = await work(served)
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        count()
        raise
    except Exception as err:
        code, message = status_for(err)
        count()  # before the status leaves: a client that reads /metrics next must see this call
        await _abort(context, code, message)
    count()
    return result


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this line is for the type checker
