"""Client-sent values quoted in error messages, cut short: an echo must never outgrow its request."""

from __future__ import annotations

import reprlib

__all__ = ["MAX_MESSAGE_CHARS", "clip", "shown"]

MAX_MESSAGE_CHARS = 1000  # gRPC trailers are small; a longer status message can fail the call itself

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxlist, _repr.maxother = 80, 8, 80


def shown(value: object) -> str:
    """`repr(value)`, shortened with `...` past 80 characters or 8 list items."""
    return _repr.repr(value)


def clip(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
