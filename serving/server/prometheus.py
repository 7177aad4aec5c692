"""Prometheus metrics, named after Triton's `nv_inference_*` family so its dashboards carry over.

Each server owns its registry (two servers in one process, as in tests, do not mix counts).
Durations are histograms in seconds, Prometheus' convention, where Triton keeps microsecond counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.server.statistics import ModelStatistics, current_timing

__all__ = ["ModelMetrics", "ServerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        model = ["model", "version"]
        self.success = Counter(
            "nv_inference_request_success", "Requests answered OK", model, registry=self.registry
        )
        self.failure = Counter(
            "nv_inference_request_failure",
            "Requests that failed, by gRPC status code",
            [*model, "reason"],
            registry=self.registry,
        )
        self.items = Counter(
            "nv_inference_count", "Items inferred (a request may hold many)", model, registry=self.registry
        )
        self.batches = Counter("nv_inference_exec_count", "Batches run", model, registry=self.registry)
        self.request_duration = Histogram(
            "nv_inference_request_duration_seconds",
            "Time from a request's arrival to its answer",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_duration = Histogram(
            "nv_inference_compute_infer_duration_seconds",
            "Time one batch spends in the runtime",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nv_inference_batch_size",
            "Items per batch run",
            model,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "nv_inference_pending_request_count",
            "Items waiting in the batch queue",
            model,
            registry=self.registry,
        )

        # Which object feeds each model version's queue-depth series: a retiring copy of a version
        # must not remove the series its reloaded successor registered.
        self._depth_owners: dict[tuple[str, ...], object] = {}

    def for_model(self, model: str, version: int | str) -> ModelMetrics:
        labels = {"model": model, "version": str(version)}
        return ModelMetrics(self, labels)


@dataclass
class ModelMetrics:
    """The server's metrics bound to one model version, and its Triton statistics (fed together)."""

    server: ServerMetrics
    labels: dict[str, str]
    stats: ModelStatistics = field(default_factory=ModelStatistics)

    def __post_init__(self) -> None:
        # Each series looked up once, not on every request (a labels() lookup locks and hashes).
        server, labels = self.server, self.labels
        self._batches, self._items = server.batches.labels(**labels), server.items.labels(**labels)
        self._batch_size = server.batch_size.labels(**labels)
        self._compute = server.compute_duration.labels(**labels)
        self._success = server.success.labels(**labels)
        self._duration = server.request_duration.labels(**labels)

    def batch_ran(self, size: int, seconds: float) -> None:
        self.stats.batch_ran(size, int(seconds * 1e9))
        self._batches.inc()
        self._items.inc(size)
        self._batch_size.observe(size)
        self._compute.observe(seconds)

    def track_queue_depth(self, owner: object, depth: Callable[[], float]) -> None:
        self.server.queue_depth.labels(**self.labels).set_function(depth)
        self.server._depth_owners[tuple(self.labels.values())] = owner

    def release_queue_depth(self, owner: object) -> None:
        key = tuple(self.labels.values())
        if self.server._depth_owners.get(key) is owner:
            del self.server._depth_owners[key]
            self.server.queue_depth.remove(*key)

    def answered(self, seconds: float, code: str) -> None:
        """`code` is the gRPC status name: OK counts a success, anything else a failure for that reason."""
        self.stats.answered(code == "OK", int(seconds * 1e9), current_timing())
        if code == "OK":
            self._success.inc()
        else:
            self.server.failure.labels(**self.labels, reason=code).inc()
        self._duration.observe(seconds)
