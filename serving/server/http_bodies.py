"""An HTTP request body, read within its limits: its size, the time it may take, and what its
`Content-Encoding` inflates to.

aiohttp's own decompression inflates a body on the event loop, which gRPC shares, and inflates all of
it however far it runs past the size limit: a 16 kB brotli bomb (10 GiB inflated) stalled both
protocols for 11 s after its 413. So the front end turns it off (`auto_decompress=False`) and reads a
body as sent, at most `max_bytes` of it within `timeout_s`; then gzip, deflate or br inflate in a
worker thread (zlib and brotli let go of the GIL while they work), in slices, and stop at the first
byte past `max_bytes`: a bomb costs at most the limit's worth of inflating, and the loop none. The
limit holds for the body as sent and for what it inflates to. Compressed bodies stay on: Triton
takes them and tritonclient sends them (`request_compression_algorithm`).

Answers are compressed where the client accepts it and it pays (`compress_answer`): aiohttp's client
(tritonclient's aio one) accepts gzip and deflate on every call, and deflating a few hundred bytes of
JSON took 1.8 % of a loaded server's CPU (~27 µs a request, half what aiohttp spends on a whole
request) to save no packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aiohttp import web

from serving.bundle.quoting import clip, shown
from serving.server.error_status import RequestError

__all__ = ["COMPRESS_FROM", "BodyReader", "InflatesPastLimitError", "compress_answer", "inflate", "too_large"]

_SLICE = 1 << 20  # inflate this much at a time at most
COMPRESS_FROM = 1024  # bytes: a smaller answer fits one packet whether compressed or not


class InflatesPastLimitError(Exception):
    """The body inflates past the limit (its inflating stopped there)."""


class BodyReader:
    """Reads request bodies; inflating runs on `pool`."""

    def __init__(self, max_bytes: int, timeout_s: float, pool: Executor) -> None:
        self.max_bytes, self.timeout_s, self.pool = max_bytes, timeout_s, pool

    async def read(self, request: web.Request) -> bytes:
        """The whole body, inflated: 413 past the limit (before more than that is read or
        inflated), 408 when it does not arrive in time, 415 for an encoding this server lacks."""
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            raise too_large(self.max_bytes, f"{declared:,}-byte")
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await request.read()
        except TimeoutError:
            timeout = web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {self.timeout_s:g} s (http_body_timeout_s)"
            )
            timeout.force_close()
            raise timeout from None
        except web.HTTPRequestEntityTooLarge:
            raise too_large(self.max_bytes, "larger") from None
        except web.RequestPayloadError as err:  # cut short, or a chunk size that is not one
            raise RequestError(f"the request body cannot be read: {' '.join(str(err).split())}") from None
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return body
        _inflater(encoding)  # an encoding this server lacks is refused here, on the loop: 415
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pool, inflate, body, encoding, self.max_bytes
            )
        except InflatesPastLimitError:
            raise too_large(
                self.max_bytes, f"{encoding}-encoded {len(body):,}-byte", "inflates past"
            ) from None


def compress_answer(size: int, accept_encoding: str) -> bool:
    """Whether an answer of `size` bytes goes compressed (where the client accepts a coding we have):
    from `COMPRESS_FROM` bytes on, or when the client refuses it uncompressed."""
    return size >= COMPRESS_FROM or identity_refused(accept_encoding)


def identity_refused(accept_encoding: str) -> bool:
    """An uncompressed answer is acceptable unless `identity;q=0`, or `*;q=0` without an entry for
    identity, says otherwise (RFC 9110, 12.5.3). A weight that is not a number counts as 1."""
    if ";" not in accept_encoding:  # no weights (the common case, on every small answer): all are 1
        return False
    weights: dict[str, float] = {}
    for entry in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in entry.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                with contextlib.suppress(ValueError):
                    weight = float(value)
        weights[coding.lower()] = weight
    return weights.get("identity", weights.get("*", 1.0)) == 0


def too_large(limit: int, size: str, verb: str = "is over") -> web.HTTPRequestEntityTooLarge:
    message = f"a {size} request body {verb} the limit of {limit:,} bytes ({limit >> 20} MiB, max_message_mb)"
    refused = web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=0, text=message)
    refused.force_close()  # the rest of the body is not read: the connection cannot carry another request
    return refused


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` inflated by its `Content-Encoding`, at most `limit` bytes of it (else
    `InflatesPastLimitError`, raised as soon as the limit is passed); a `RequestError` for a body
    that does not inflate or is cut short. Runs for a while: call it off the event loop."""
    return _inflater(encoding)(body, limit)


def _inflater(encoding: str) -> Callable[[bytes, int], bytes]:
    if encoding == "gzip" or encoding == "x-gzip":
        return _gunzip
    if encoding == "deflate":
        return _inflate
    if encoding == "br" and _brotli() is not None:
        return _unbrotli
    known = "gzip, deflate" + (", br" if _brotli() is not None else "")
    raise web.HTTPUnsupportedMediaType(
        text=f"Content-Encoding {shown(clip(encoding, 60))} is not supported; send {known} or identity"
    )


def _gunzip(body: bytes, limit: int) -> bytes:
    return _zlib(body, limit, 16 + zlib.MAX_WBITS, "gzip")


def _inflate(body: bytes, limit: int) -> bytes:
    """HTTP's deflate is zlib-wrapped (RFC 9110); some clients send it raw, which is read too."""
    wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and int.from_bytes(body[:2], "big") % 31 == 0
    return _zlib(body, limit, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, "deflate")


def _zlib(body: bytes, limit: int, wbits: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while data and not inflater.eof:
            out += inflater.decompress(data, min(_SLICE, limit + 1 - len(out)))
            if len(out) > limit:
                raise InflatesPastLimitError
            data = inflater.unconsumed_tail
        out += inflater.flush(1024)  # what the last input left in zlib's window: a few kB at most
    except zlib.error as err:
        raise RequestError(f"the {name} request body does not inflate: {err}") from None
    if len(out) > limit:
        raise InflatesPastLimitError
    if not inflater.eof:
        raise RequestError(f"the {name} request body is cut short")
    return bytes(out)


def _unbrotli(body: bytes, limit: int) -> bytes:
    brotli = _brotli()
    assert brotli is not None  # chosen only where it imports
    inflater = brotli.Decompressor()
    out = bytearray()
    data = body
    try:
        while True:
            out += inflater.process(data, output_buffer_limit=min(_SLICE, limit + 1 - len(out)))
            data = b""
            if len(out) > limit:
                raise InflatesPastLimitError
            if inflater.is_finished():
                return bytes(out)
            if inflater.can_accept_more_data():  # all of the body is in, and it is not finished
                raise RequestError("the br request body is cut short")
    except brotli.error as err:
        raise RequestError(f"the br request body does not inflate: {err}") from None


def _brotli() -> Any:
    """The `brotli` module (which aiohttp uses too) or None where it is not installed."""
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None
