"""A health probe for containers and orchestrators: ask the server's own `grpc.health.v1` service.

Docker's HEALTHCHECK and Kubernetes' exec probes run `serve-kit health`; it needs nothing beyond
this package (no `grpc_health_probe` binary to download), and exits 0 only for SERVING.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["check_health"]


def check_health(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving?, what was seen) for `service` ("" is the whole server, else a model name)."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as err:
            return False, f"{address}: {err.code().name} ({err.details()})"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return (
        response.status == health_pb2.HealthCheckResponse.SERVING,
        f"{address} {service or '(server)'}: {status}",
    )
