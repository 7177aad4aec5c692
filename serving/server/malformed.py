"""Undecodable request bytes → INVALID_ARGUMENT with the reason, not gRPC's generic UNKNOWN.

grpcio decodes a request before any handler runs and answers UNKNOWN when protobuf refuses the
bytes (invalid UTF-8 in a string field, a truncated varint, ...). `GuardedRegistration` stands in
for the server when a generated `add_*Servicer_to_server` registers its handlers, and wraps each
unary method's decoder once, so a failure reaches the handler as a value, which it answers
precisely. Wrapped at registration, not by an interceptor: nothing extra runs per call but the
check itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

__all__ = ["register"]


@dataclass(frozen=True, slots=True)
class _Malformed:
    error: str


def guarded(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """`handler` answering an undecodable request INVALID_ARGUMENT with protobuf's reason."""
    if handler.unary_unary is None or handler.request_deserializer is None:
        return handler
    decode, call = handler.request_deserializer, handler.unary_unary

    def safe_decode(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as err:
            return _Malformed(str(err))

    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if type(request) is _Malformed:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{method}: the request is not a valid message ({request.error})",
            )
        return await call(request, context)

    return handler._replace(request_deserializer=safe_decode, unary_unary=checked)


class GuardedRegistration:
    """Pass to a generated `add_*Servicer_to_server(servicer, GuardedRegistration(server))`: the
    handlers it registers by method (matched in gRPC core) and its generic handler (the fallback)
    both reach the server guarded."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_GuardedGeneric(handler) for handler in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        safe = {name: guarded(handler, f"/{service}/{name}") for name, handler in handlers.items()}
        self.server.add_registered_method_handlers(service, safe)


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers are guarded: the fallback, for a method gRPC core did not
    match to a registered one (rare: the registered ones are the same)."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        found = self.inner.service(handler_call_details)
        return None if found is None else guarded(found, handler_call_details.method)


def register(add: Callable[[Any, Any], None], servicer: object, server: grpc.aio.Server) -> None:
    """`add(servicer, server)` (a generated registration), every unary method guarded."""
    add(servicer, GuardedRegistration(server))
