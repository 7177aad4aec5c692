"""Undecodable request bytes → INVALID_ARGUMENT with the reason, not gRPC's generic UNKNOWN.

grpcio decodes a request before any handler runs and answers UNKNOWN when protobuf refuses the
bytes (invalid UTF-8 in a string field, a truncated varint, ...). This interceptor wraps each
unary method's decoder so a failure reaches the handler as a value, which it answers precisely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

__all__ = ["MalformedRequestInterceptor"]


@dataclass(frozen=True)
class _Malformed:
    error: str


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        decode, method = handler.request_deserializer, handler.unary_unary

        def safe_decode(data: bytes) -> Any:
            try:
                return decode(data)
            except DecodeError as err:
                return _Malformed(str(err))

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{handler_call_details.method}: the request is not a valid message ({request.error})",
                )
            return await method(request, context)

        return handler._replace(request_deserializer=safe_decode, unary_unary=checked)
