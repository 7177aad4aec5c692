"""The floor of any Python gRPC server: a `grpc.aio` server whose `ModelInfer` answers every request
with the same prepared bytes, nothing parsed, nothing run. `bench/overhead.py` starts it (with the
server's own gRPC options) to show how much of a request's cost is the transport itself.

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
    server = grpc.aio.server()
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
