"""What keeps a flood from filling the disk or the file table: the event loop's errors come as a few
throttled JSON lines, and the HTTP connection cap stays under the open-file limit."""

from __future__ import annotations

import asyncio
import errno
import json
import logging

import pytest

from serving.server import http_connection, loop_errors
from serving.server.http_connection import ConnectionLimits
from serving.server.logs import JsonFormatter


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_thousand_failed_accepts_are_a_few_json_lines_without_tracebacks() -> None:
    lines = Lines()
    logger = logging.getLogger(loop_errors.__name__)
    logger.addHandler(lines)
    loop = asyncio.new_event_loop()
    try:
        loop_errors.install(loop, per_second=5)
        for _ in range(1000):
            error = OSError(errno.EMFILE, "Too many open files")
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": error}
            )
    finally:
        loop.close()
        logger.removeHandler(lines)
    assert 1 <= len(lines.lines) <= 6
    entry = json.loads(lines.lines[0])
    assert entry["message"] == "socket.accept() out of system resource"
    assert entry["error"] == "OSError: [Errno 24] Too many open files" and "Traceback" not in lines.lines[0]


def test_the_connection_cap_stays_under_half_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_connection.resource, "getrlimit", lambda _: (1024, 4096))
    assert ConnectionLimits(max_connections=1000).effective_max_connections() == 512
    assert ConnectionLimits(max_connections=20).effective_max_connections() == 20


def test_a_long_flood_of_refused_connections_logs_a_line_every_few_seconds_with_its_count() -> None:
    """21,000 connections over the cap arrive over minutes: at 20 lines a second that would be
    thousands of lines; the cap's own throttle says the same in one line every 5 s."""
    from serving.server.logs import Throttle

    now = [0.0]
    throttle = Throttle(per_second=0.2, burst=5, clock=lambda: now[0])
    admitted = []
    for i in range(21_000):  # 150 connections a second for 140 s
        now[0] = i / 150
        dropped = throttle.admit()
        if dropped is not None:
            admitted.append(dropped)
    assert len(admitted) <= 5 + 140 * 0.2 + 1
    assert (
        len(admitted) + sum(admitted) + throttle.suppressed == 21_000
    )  # each counted, the last in the next line
