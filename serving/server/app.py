"""The server: V2 inference over gRPC and HTTP/REST, the typed task API, health, reflection, metrics,
and a clean drain.

`InferenceServer` is the whole service in one object; `serve-kit serve` runs it until SIGTERM or
SIGINT, then drains (`InferenceServer.stop`): no accepted call is lost, and it exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from serving.server.decode_turns import DecodeTurns
from serving.server.feedback_store import FeedbackStore
from serving.server.http_connection import ConnectionLimits
from serving.server.malformed import register
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelRepository, ModelState
from serving.server.settings import ServerSettings
from serving.server.task_api import TaskService
from serving.server.v2 import InferenceService, NotImplementedHandler
from serving.server.v2_engine import V2Engine
from serving.server.v2_http import HttpFrontEnd
from serving.wire import inference_pb2, inference_pb2_grpc, tasks_pb2, tasks_pb2_grpc

__all__ = ["InferenceServer", "ListenError", "run_server"]

log = logging.getLogger(__name__)
SERVICES = [
    inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].full_name,
]


class ListenError(OSError):
    """A port the server cannot listen on: in use by another process, or not this machine's address."""


class InferenceServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self.decode_turns = DecodeTurns(decode_pool, settings.decode_threads)
        self.health = health_aio.HealthServicer()
        self.repository = ModelRepository(settings, self.metrics, self.decode_turns, self._model_changed)
        self.engine = V2Engine(self.repository, self.metrics)
        limit = settings.max_message_mb << 20
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # gRPC shares a port by default: a second server on it would silently take half the calls
                ("grpc.so_reuseport", int(settings.reuse_port)),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        v2 = InferenceService(self.engine)
        register(inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, v2, self.grpc)
        feedback = settings.feedback
        store = None if feedback.dir is None else FeedbackStore(feedback.dir, feedback.max_records)
        tasks = TaskService(self.repository, self.metrics, store, int(feedback.max_record_mb * (1 << 20)))
        register(tasks_pb2_grpc.add_TasksServicer_to_server, tasks, self.grpc)
        register(health_pb2_grpc.add_HealthServicer_to_server, self.health, self.grpc)
        reflection.enable_server_reflection(
            [*SERVICES, reflection.SERVICE_NAME, "grpc.health.v1.Health"], self.grpc
        )
        self.grpc.add_generic_rpc_handlers([NotImplementedHandler()])  # after every servicer
        self.http = (
            HttpFrontEnd(
                self.engine,
                limit,
                ConnectionLimits(
                    settings.http_max_connections,
                    settings.http_header_timeout_s,
                    settings.http_idle_timeout_s,
                ),
                settings.http_body_timeout_s,
            )
            if settings.http_port is not None
            else None
        )
        self.port = 0
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._health_updates: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Claim the gRPC port (a port in use fails at once, before minutes of loading), load every
        model (a failing one is reported, not fatal), then listen."""
        settings = self.settings
        host = settings.host
        try:
            self.port = self.grpc.add_insecure_port(f"{host}:{settings.port}")
        except RuntimeError as err:  # grpcio's words for a failed bind
            raise _cannot_listen("gRPC", f"{host}:{settings.port}", str(err)) from None
        if self.port == 0:
            raise _cannot_listen("gRPC", f"{host}:{settings.port}", "no port bound")
        await self.repository.scan()
        await self._set_overall_health()
        await self.grpc.start()
        which, port = "HTTP", settings.http_port
        try:
            if self.http is not None and port is not None:
                self.http_port = await self.http.start(host, port, settings.reuse_port)
            which, port = "metrics", settings.metrics_port
            if port is not None:
                self._metrics_server, _ = start_http_server(port, host, registry=self.metrics.registry)
                self.metrics_port = self._metrics_server.server_port
        except OSError as err:
            await self.grpc.stop(0)
            if self.http is not None:
                await self.http.stop(0)
            raise _cannot_listen(which, f"{host}:{port}", err.strerror or str(err)) from None
        if self.settings.poll_interval_s > 0 and self.settings.model_control == "poll":
            self._poller = asyncio.get_running_loop().create_task(self.repository.poll())
        log.info(
            "serving",
            extra={
                "address": f"{self.settings.host}:{self.port}",
                "http_port": self.http_port,
                "metrics_port": self.metrics_port,
                "models": sorted(self.repository.models),
            },
        )

    async def stop(self, grace: float | None = None, prestop: float = 0.0) -> None:
        """Drain, losing no call that was accepted.

        1. Report NOT_SERVING (health checks, ServerReady, HTTP's /v2/health/ready) and keep answering
           for `prestop` seconds, while load balancers and Kubernetes' readiness probe stop sending
           traffic here.
        2. Stop accepting: gRPC refuses new calls (UNAVAILABLE), HTTP new connections and requests; both
           let every accepted one finish (up to `grace` seconds); then unload every model.
        """
        self.repository.draining = True  # ServerReady says no; requests are still answered
        if self.http is not None:
            self.http.drain()  # HTTP answers say Connection: close; quiet keep-alive connections close
        await self.health.enter_graceful_shutdown()
        if prestop > 0:
            await asyncio.sleep(prestop)
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        grace = self.settings.drain_timeout_s if grace is None else grace
        # A call that gRPC core had received but not yet handed to us at the instant it stops comes back
        # CANCELLED (grpc/grpc#41785): the pre-stop period is what keeps that from hitting calls that
        # clients sent before the signal.
        fronts = [self.grpc.stop(grace), *([self.http.stop(grace)] if self.http is not None else [])]
        await asyncio.gather(*fronts)  # both drain at once, within the one grace period
        self.repository.closed = True  # nothing can reach a model any more; say so if something tries
        try:
            await asyncio.wait_for(self.repository.close(), grace + 1)
        except TimeoutError:
            log.error("models did not finish their queued work in time; stopping anyway")
        self.decode_turns.pool.shutdown(wait=False, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        log.info("stopped")

    def _model_changed(self, state: ModelState) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if state.served
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        task = asyncio.get_running_loop().create_task(self._set_health(state.name, status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _set_health(self, service: str, status: int) -> None:
        await self.health.set(service, status)
        if service:
            await self._set_overall_health()

    async def _set_overall_health(self) -> None:
        serving = (
            health_pb2.HealthCheckResponse.SERVING
            if self.engine.ready()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", serving)


def _cannot_listen(which: str, address: str, reason: str) -> ListenError:
    shared = (
        "metrics ports are never shared: give each process its own"
        if which == "metrics"
        else ("reuse_port=true shares the gRPC and HTTP ports with other serve-kit processes on purpose")
    )
    return ListenError(
        f"cannot listen on {address} ({which}): the port is in use or the address is not this "
        f"machine's ({reason}); {shared}"
    )


async def run_server(settings: ServerSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    server = InferenceServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    prestop = settings.drain_prestop_s

    def on_signal(sig: signal.Signals) -> None:
        nonlocal prestop
        if stop.is_set():  # a second signal: the operator will not wait for the drain
            log.error("second signal while draining; exiting now")
            os._exit(1)
        if sig == signal.SIGINT:  # Ctrl-C at a terminal: nobody routes traffic away first
            prestop = 0.0
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await server.start()
    # gRPC first and metrics next, as before HTTP came: scripts read them from this line
    metrics = f", metrics on {settings.host}:{server.metrics_port}" if server.metrics_port else ""
    http = f", http on {settings.host}:{server.http_port}" if server.http_port else ""
    print(f"serve-kit listening on {settings.host}:{server.port}{metrics}{http}", flush=True)
    await stop.wait()
    log.info("draining", extra={"prestop_s": prestop, "timeout_s": settings.drain_timeout_s})
    await server.stop(prestop=prestop)
