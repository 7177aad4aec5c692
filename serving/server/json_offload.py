"""Big JSON infer bodies parsed, and big JSON answers written, in a worker process.

CPython's JSON parser and encoder are C loops that hold the GIL from start to end, so a thread does
not help: a 0.55 s parse in a thread stalled the event loop 0.73 s (measured here), and the loop is
gRPC's too (a legal 60 MB body froze both protocols 4 s). A worker process has a GIL of its own.
What crosses to it and back is bytes: the body in, the `ModelInferRequest` out as protobuf, which the
loop reads back in milliseconds (packed numbers are copied, not parsed); an answer goes as protobuf
and comes back as the HTTP body. Small bodies and answers are done in place: under `inline_bytes`
of JSON a round trip to the worker costs more than the work.

The worker starts on first use (spawned, not forked: the server runs gRPC's threads) and is
replaced if it dies.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import numpy as np

from serving.server.tensors import DTYPES
from serving.server.v2_http_codec import OutputFormat, encode_infer, parse_infer
from serving.wire import inference_pb2 as pb

__all__ = ["INLINE_BYTES", "JsonOffload"]

T = TypeVar("T")
INLINE_BYTES = 1 << 20  # about 10 ms of json.loads: less than a round trip's worth of waiting


class JsonOffload:
    def __init__(self, inline_bytes: int = INLINE_BYTES) -> None:
        self.inline_bytes = inline_bytes
        self._pool: ProcessPoolExecutor | None = None

    async def parse_infer(
        self, body: bytes, header_length: str | None, model: str, version: str
    ) -> tuple[pb.ModelInferRequest, OutputFormat]:
        """`v2_http_codec.parse_infer`, in the worker when its JSON is big."""
        json_bytes = len(body)
        if header_length is not None and header_length.strip().isdigit():
            json_bytes = int(header_length)
        if json_bytes < self.inline_bytes:
            return parse_infer(body, header_length, model, version)
        message, output_format = await self._run(_parse, body, header_length, model, version)
        return pb.ModelInferRequest.FromString(message), output_format

    async def encode_infer(
        self, response: pb.ModelInferResponse, output_format: OutputFormat
    ) -> tuple[bytes, int | None]:
        """`v2_http_codec.encode_infer`, in the worker when the outputs it writes as JSON are big."""
        as_json = sum(
            len(raw)
            for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
            if not output_format.binary(tensor.name)
        )
        if as_json < self.inline_bytes:
            return encode_infer(response, output_format)
        return await self._run(_encode, response.SerializeToString(), output_format)

    async def close(self) -> None:
        """Stop the worker, waiting (in a thread) for the job it runs: a pool left running at exit
        leaks its semaphores (multiprocessing's resource tracker then warns on stderr)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool:
            if self._pool is pool:  # the worker died (killed, out of memory): the next call gets a new one
                self._pool = None
            raise


def _parse(
    body: bytes, header_length: str | None, model: str, version: str
) -> tuple[bytes, OutputFormat]:  # in the worker
    request, output_format = parse_infer(body, header_length, model, version)
    _numbers_as_raw(request)
    return request.SerializeToString(), output_format


def _numbers_as_raw(request: pb.ModelInferRequest) -> None:
    """Typed numbers as raw little-endian contents, as a binary-data request sends them: the engine
    reads raw contents in one copy, typed ones a Python number at a time (2.7 million of them held the
    loop 0.2 s). Only where every input is numeric and holds what its shape says; anything else is
    left for the engine's own checks to name."""
    raws = []
    for tensor in request.inputs:
        fields = tensor.contents.ListFields() if tensor.HasField("contents") else []
        dtype = DTYPES.get(tensor.datatype)
        if (
            dtype is None
            or tensor.datatype == "BYTES"
            or len(fields) != 1
            or any(d < 0 for d in tensor.shape)
        ):
            return
        values = fields[0][1]
        if len(values) != math.prod(tensor.shape):
            return
        raws.append(np.asarray(values, dtype).tobytes())
    for tensor, raw in zip(request.inputs, raws, strict=True):
        tensor.ClearField("contents")
        request.raw_input_contents.append(raw)


def _encode(response: bytes, output_format: OutputFormat) -> tuple[bytes, int | None]:  # in the worker
    return encode_infer(pb.ModelInferResponse.FromString(response), output_format)
