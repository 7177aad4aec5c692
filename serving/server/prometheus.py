"""Prometheus metrics under Triton's own `nv_inference_*` names, so its dashboards carry over.

Triton writes a counter as `nv_inference_request_success`; prometheus-client would write
`nv_inference_request_success_total`, and a `_created` series beside each counter and histogram, which
no Triton dashboard queries. So the metrics live outside the registry and one collector exposes them
with Triton's exact names: counters without `_total` (declared untyped, which is how the text format
lets a counter keep a name without the suffix; `rate()` reads them all the same) and no `_created`.

Beside Triton's cumulative microsecond counters of successful requests, latency and batch sizes are
also histograms (seconds, Prometheus' convention). Each server owns its registry (two servers in one
process, as in tests, do not mix counts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from serving.server.statistics import ModelStatistics, current_timing

__all__ = ["ModelMetrics", "ServerMetrics", "TritonNames"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


# Triton's cumulative microseconds of successful requests, by part (`RequestTiming`'s fields)
_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


class TritonNames(Collector):
    """Exposes prometheus-client metrics under their own names: a counter's samples without the
    `_total` suffix, as an untyped family, and no metric's `_created` series."""

    def __init__(self, metrics: Iterable[MetricWrapperBase]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            for family in metric.collect():
                counter = family.type == "counter"
                exposed = Metric(family.name, family.documentation, "unknown" if counter else family.type)
                for sample in family.samples:
                    if sample.name == f"{family.name}_created":
                        continue
                    exposed.samples.append(sample._replace(name=family.name) if counter else sample)
                yield exposed


class ServerMetrics:
    def __init__(self) -> None:
        model = ["model", "version"]
        self.success = Counter("nv_inference_request_success", "Requests answered OK", model, registry=None)
        self.failure = Counter(
            "nv_inference_request_failure",
            "Requests that failed, by gRPC status code",
            [*model, "reason"],
            registry=None,
        )
        self.items = Counter(
            "nv_inference_count", "Items inferred (a request may hold many)", model, registry=None
        )
        self.batches = Counter("nv_inference_exec_count", "Batches run", model, registry=None)
        self.request_us = Counter(
            "nv_inference_request_duration_us",
            "Cumulative time of successful requests, arrival to answer, in microseconds",
            model,
            registry=None,
        )
        self.part_us = {
            part: Counter(
                f"nv_inference_{part}_duration_us",
                f"Cumulative {part.replace('_', ' ')} time of successful requests, in microseconds",
                model,
                registry=None,
            )
            for part in _PARTS
        }
        self.request_duration = Histogram(
            "nv_inference_request_duration_seconds",
            "Time from a request's arrival to its answer",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=None,
        )
        self.compute_duration = Histogram(
            "nv_inference_compute_infer_duration_seconds",
            "Time one batch spends in the runtime",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=None,
        )
        self.batch_size = Histogram(
            "nv_inference_batch_size", "Items per batch run", model, buckets=_BATCH_BUCKETS, registry=None
        )
        self.queue_depth = Gauge(
            "nv_inference_pending_request_count", "Items waiting in the batch queue", model, registry=None
        )
        self.registry = CollectorRegistry()
        self.registry.register(
            TritonNames(
                [
                    self.success,
                    self.failure,
                    self.items,
                    self.batches,
                    self.request_us,
                    *self.part_us.values(),
                    self.request_duration,
                    self.compute_duration,
                    self.batch_size,
                    self.queue_depth,
                ]
            )
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
        self._request_us = server.request_us.labels(**labels)
        self._part_us = [(part, counter.labels(**labels)) for part, counter in server.part_us.items()]

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
        timing = current_timing()
        self.stats.answered(code == "OK", int(seconds * 1e9), timing)
        if code == "OK":
            self._success.inc()
            self._request_us.inc(seconds * 1e6)
            if timing is not None:
                for part, counter in self._part_us:
                    counter.inc(getattr(timing, part) / 1e3)
        else:
            self.server.failure.labels(**self.labels, reason=code).inc()
        self._duration.observe(seconds)
