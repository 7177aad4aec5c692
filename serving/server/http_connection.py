"""The HTTP front end's connections, guarded: how many may be open, how long each phase of a request
may take, malformed HTTP answered in JSON, and a drain that cuts no request.

aiohttp runs one `RequestHandler` per connection; `GuardedConnection` adds what it lacks:

- a cap: past `max_connections` open connections, a new one is answered 503 and closed at once (its
  file descriptor freed) while the open ones keep working. The cap stays under half the process's
  open-file limit, so a flood of half-open connections cannot starve gRPC, models and files of
  descriptors (21,000 of them once made accept() fail 3 million times).
- a header timeout: from a request's first byte until its headers are complete (a half-sent request
  line is answered 408 and closed); aiohttp's keep-alive timeout closes a connection idle between
  requests, or one that never sends a byte. (The body's own timeout is `http_bodies`'s.)
- malformed HTTP (a `Content-Length` that is no number, a bad chunk size, oversized headers, an
  HTTP/2 preface) is answered `{"error": ...}` with a precise status (400, 414, 431, 505), and logged
  as one throttled JSON line, never aiohttp's 11-line traceback per request.
- a drain: every answer says `Connection: close`, and a connection quiet since its last answer is
  closed; one that has started to send a request is answered first.
- the handler of a request whose client goes away is cancelled (aiohttp's `handler_cancellation`,
  set by the front end), which withdraws its queued decoding and batch items and frees its memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from serving.bundle.quoting import clip
from serving.server.logs import Throttle

__all__ = ["ConnectionLimits", "Connections", "GuardedConnection"]

log = logging.getLogger(__name__)
QUIET_S = 0.5  # a draining connection this long without a byte since its answer is closed
FD_RESERVE = 0.5  # the share of the open-file limit HTTP connections may hold at most
_refusals = Throttle(20.0)
_over_cap = Throttle(per_second=0.2, burst=5)
"""Connections over the cap come in floods of thousands: a line every 5 s, with the count since the
last, says as much as one per connection (20 a second would be 2,800 lines for 21,000 of them)."""


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0

    def effective_max_connections(self) -> int:
        """The cap, lowered to half the open-file limit where that is lower."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, int(soft * FD_RESERVE)))


class Connections:
    """The open connections of one front end; the protocol factory for its listener."""

    def __init__(self, server: web.Server, limits: ConnectionLimits) -> None:
        self.server, self.limits = server, limits
        self.max_connections = limits.effective_max_connections()
        self.open: set[GuardedConnection] = set()
        self.draining = False
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(
            self,
            self.server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self.limits.idle_timeout_s,
            access_log=None,  # gRPC logs no line per call either
            auto_decompress=False,  # bodies inflate off the loop, capped (http_bodies)
        )

    def drain(self) -> None:
        """From now on every answer closes its connection, and quiet connections are closed."""
        self.draining = True
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self, grace: float) -> None:
        """After the listener closed: wait (up to `grace` seconds) for every connection to finish its
        request and close; then cut what is left."""
        self.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.open and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.server.shutdown(max(deadline - loop.time(), 1e-3))  # aiohttp reads 0 as "no limit"

    async def _sweep(self) -> None:
        while True:
            for connection in list(self.open):
                connection.close_if_quiet()
            await asyncio.sleep(0.05)


class GuardedConnection(RequestHandler):
    def __init__(self, owner: Connections, server: web.Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.owner = owner
        self.refused = False
        self.header_timer: asyncio.TimerHandle | None = None
        self.last_active = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        if len(owner.open) >= owner.max_connections:
            self.refused = True
            reason = f"{owner.max_connections} HTTP connections are open (http_max_connections)"
            _over_cap.log(log, logging.WARNING, "refused an HTTP connection", status=503, reason=reason)
            refused = cast(asyncio.Transport, transport)
            refused.write(
                _raw_answer(503, f"the server holds {owner.max_connections} HTTP connections; retry")
            )
            refused.close()
            return
        owner.open.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.owner.open.discard(self)
        self._stop_header_timer()
        if not self.refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:
            self.last_active = self._loop.time()
            if self.header_timer is None and not self._request_in_progress and not self._messages:
                self.header_timer = self._loop.call_later(
                    self.owner.limits.header_timeout_s, self._headers_late
                )
        super().data_received(data)
        if self._messages:  # headers complete (or found malformed): the header clock stops
            self._stop_header_timer()

    async def _handle_request(self, request: BaseRequest, *args: Any, **kwargs: Any) -> Any:
        self._stop_header_timer()
        try:
            return await super()._handle_request(request, *args, **kwargs)
        finally:
            self.last_active = self._loop.time()

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse, *args: Any) -> Any:
        if self.owner.draining:
            resp.force_close()  # the answer says Connection: close
        answered = await super().finish_response(request, resp, *args)
        if resp.status == 408:  # the client is too slow to wait for: no lingering for the rest of its body
            self.force_close()
        return answered

    def close_if_quiet(self) -> None:
        """Close the connection if it waits for a request and has had no byte of one for a while."""
        idle = self._waiter is not None and not self._waiter.done()
        if (
            idle
            and not self._messages
            and self.header_timer is None
            and self._loop.time() - self.last_active >= QUIET_S
        ):
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or a handler that raised): JSON, a
        precise status, one throttled log line."""
        status, text = _protocol_error(status, exc)
        if status == 500 and exc is not None:  # not the client's doing: a bug, with its traceback
            self.log_exception("internal error handling an HTTP request", exc_info=exc)
        else:
            _refuse(text, status)
        if request.writer.output_size > 0:  # an answer is half sent: nothing more can be said
            raise ConnectionError("cannot answer after a response has started")
        response = web.json_response({"error": text}, status=status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's own error lines, throttled: one JSON line each, with the traceback only where it
        tells of a bug (not of a client's bad bytes or a dropped connection)."""
        dropped = _refusals.admit()
        if dropped is None:
            return
        try:
            text = str(args[0]) % args[1:] if args else ""
        except (TypeError, ValueError):
            text = " ".join(map(str, args))
        error = kwargs.get("exc_info")
        fields: dict[str, Any] = {"not_logged_since": dropped} if dropped else {}
        if not isinstance(error, BaseException):
            log.warning(clip(text, 300), extra=fields)
        elif isinstance(error, HttpProcessingError | OSError):
            fields["error"] = clip(f"{type(error).__name__}: {error}", 300)
            log.warning(clip(text, 300), extra=fields)
        else:
            log.error(clip(text, 300), exc_info=error, extra=fields)

    def _headers_late(self) -> None:
        self.header_timer = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        timeout = self.owner.limits.header_timeout_s
        text = f"the request line and headers did not arrive within {timeout:g} s (http_header_timeout_s)"
        _refuse(text, 408)
        self.transport.write(_raw_answer(408, text))
        self.force_close()

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None


def _protocol_error(status: int, exc: BaseException | None) -> tuple[int, str]:
    """The status and message for what aiohttp's parser refused."""
    if not isinstance(exc, HttpProcessingError):
        return 500, "internal error handling the request; the server logged it"
    message = " ".join(str(exc.message).split())
    if isinstance(exc, LineTooLong):
        where = message.lower()
        if "status line" in where or "url" in where or "request line" in where:
            return 414, f"the request line is too long: {clip(message, 200)}"
        return 431, f"a request header is too long: {clip(message, 200)}"
    if "too many headers" in message.lower():
        return 431, f"too many request headers: {clip(message, 200)}"
    if "PRI/Upgrade" in message or "HTTP/2" in message:  # h2 with prior knowledge: llhttp pauses on PRI
        return 505, "this port speaks HTTP/1.1; HTTP/2 (gRPC) goes to the gRPC port"
    return exc.code if 400 <= exc.code < 600 else status, f"malformed HTTP request: {clip(message, 300)}"


def _refuse(reason: str, status: int) -> None:
    _refusals.log(log, logging.WARNING, "refused an HTTP request", status=status, reason=clip(reason, 300))


def _raw_answer(status: int, text: str) -> bytes:
    """A whole HTTP/1.1 answer, for a connection that has no request object to answer through."""
    body = json.dumps({"error": text}).encode()
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
