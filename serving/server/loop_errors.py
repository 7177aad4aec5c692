"""The event loop's own errors as throttled JSON log lines, never a flood of tracebacks.

asyncio reports what no task catches (an `accept()` that fails when the process is out of file
descriptors, a callback that raised) through the loop's exception handler, whose default writes a
plain-text traceback each time: under a flood of connections that was 3.15 million tracebacks, 1.28 GB
of stderr in five minutes. Here each report is one JSON line, at most a few a second; the next line
let through says how many were not logged. Resource errors (EMFILE, ENOBUFS, ...) carry no traceback:
the call is always the same accept, and the message says all there is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from serving.bundle.quoting import clip
from serving.server.logs import Throttle

__all__ = ["install"]

log = logging.getLogger(__name__)


def install(loop: asyncio.AbstractEventLoop, per_second: float = 5.0) -> None:
    """Route `loop`'s unhandled errors through a throttle of `per_second` lines."""
    throttle = Throttle(per_second)

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        dropped = throttle.admit()
        if dropped is None:
            return
        error = context.get("exception")
        fields: dict[str, Any] = {"error": clip(f"{type(error).__name__}: {error}", 300) if error else None}
        if dropped:
            fields["not_logged_since"] = dropped
        traceback = error if error is not None and not isinstance(error, OSError) else None
        log.error(
            clip(str(context.get("message", "event loop error")), 300), exc_info=traceback, extra=fields
        )

    loop.set_exception_handler(report)
