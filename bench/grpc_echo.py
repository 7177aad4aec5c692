"""The floor of any Python gRPC server: a `grpc.aio` server whose `ModelInfer` answers every request
with the same prepared bytes, nothing parsed, nothing run. `bench/overhead.py` starts it to show how
much of a request's cost is the transport itself; it has serve-kit's gRPC options (message limits,
at most 1,024 calls in progress), so the two differ only in what serve-kit does with a request.

    python bench/grpc_echo.py ANSWER_FILE   # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import grpc

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


async def serve(answer: bytes) -> None:
    async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    )
    limit = 64 << 20  # serve-kit's default max_message_mb
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        maximum_concurrent_rpcs=1024,
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]).read_bytes()))
