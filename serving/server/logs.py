"""Structured logs: one JSON object per line, with whatever `extra=` fields the caller attached."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "TextFormatter", "Throttle", "configure_logging"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Time, level, message, then the `extra=` fields as key=value: a text line says which model and
    version as a JSON line does."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  # logging's name
        extras = " ".join(
            f"{k}={json.dumps(v, default=str)}" for k, v in record.__dict__.items() if k not in _STANDARD
        )
        line = super().formatMessage(record)
        return f"{line} {extras}" if extras else line


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("serving")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Python's warnings (numpy's about NaN, say) as log lines in the same format, not bare stderr text
    logging.captureWarnings(True)
    warnings = logging.getLogger("py.warnings")
    warnings.handlers[:] = [handler]
    warnings.propagate = False


class Throttle:
    """At most `per_second` log lines a second (a token bucket, bursts of `burst`, by default that
    many): past it, lines are counted, and the next one let through carries how many were not
    logged, so a flood of bad input or a failing accept loop cannot fill the disk."""

    def __init__(
        self,
        per_second: float = 20.0,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second, self.burst, self.clock = per_second, burst or per_second, clock
        self.tokens, self.updated, self.suppressed = self.burst, clock(), 0

    def admit(self) -> int | None:
        """None: drop this line (it is counted); else log it, with this many dropped before it."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            self.suppressed += 1
            return None
        self.tokens -= 1
        dropped, self.suppressed = self.suppressed, 0
        return dropped

    def log(self, logger: logging.Logger, level: int, message: str, **fields: object) -> None:
        dropped = self.admit()
        if dropped is None:
            return
        if dropped:
            fields["not_logged_since"] = dropped
        logger.log(level, message, extra=fields)
