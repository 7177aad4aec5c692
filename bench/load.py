"""What every serving benchmark shares: clients driven back to back through a timed window, the CPU
the server's processes spent in it (read from `/proc/<pid>/stat` through psutil), and client and
server pinned to separate cores, so neither steals the other's.

Nothing here imports a V2 client or the server's protobuf modules: both register `inference.*` in
protobuf's global pool, and a benchmark process must hold at most one of them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psutil

__all__ = ["Call", "Cores", "Probe", "Window", "cpu_seconds", "drive", "load_average", "span", "split_cores"]

Probe = Callable[[], tuple[float, float]]  # (items, batches) run by the server so far
Call = Callable[[], Awaitable[object]]  # one request of one client


@dataclass
class Window:
    """One server's timed window: requests/s, latencies, CPU of clients and server, mean batch."""

    items_s: float
    latencies_ms: list[float]
    client_cpu_ms: float
    server_cpu_ms: float
    mean_batch: float | None
    seconds: float

    def per_request(self, cpu_ms: float) -> float:
        return cpu_ms / max(1, len(self.latencies_ms))

    @property
    def server_us_per_item(self) -> float:
        """The server's CPU µs per item answered (per request, when each request holds one item)."""
        return 1e3 * self.server_cpu_ms / max(1e-9, self.items_s * self.seconds)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a process and of its live descendants (TorchServe's workers)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _no_batches() -> tuple[float, float]:
    return 0.0, 0.0


async def drive(
    calls: Sequence[Call],
    server: psutil.Process | Sequence[psutil.Process],
    warmup: float,
    seconds: float,
    batches: Probe = _no_batches,
) -> Window:
    """Each call is one client sending its request back to back; requests/s and latencies of the
    requests answered within the timed window after the warm-up, and the CPU spent during it
    (`server`: its processes, or this very process for a server called in-process)."""
    servers = [server] if isinstance(server, psutil.Process) else list(server)
    start = time.perf_counter() + warmup
    end = start + seconds
    latencies: list[float] = []

    async def one_client(call: Call) -> None:
        while (began := time.perf_counter()) < end:
            await call()
            answered = time.perf_counter()
            if start <= answered < end:
                latencies.append((answered - began) * 1e3)

    def counters() -> tuple[float, float, float, float]:
        items, runs = batches()
        return time.process_time(), sum(map(cpu_seconds, servers)), items, runs

    async def sample() -> tuple[tuple[float, ...], tuple[float, ...]]:
        await asyncio.sleep(start - time.perf_counter())
        before = await asyncio.to_thread(counters)
        await asyncio.sleep(end - time.perf_counter())
        return before, await asyncio.to_thread(counters)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(one_client(call) for call in calls))
    finally:
        before, after = await sampler
    ran = after[3] - before[3]
    return Window(
        len(latencies) / seconds,
        latencies,
        (after[0] - before[0]) * 1e3,
        (after[1] - before[1]) * 1e3,
        (after[2] - before[2]) / ran if ran > 0 else None,
        seconds,
    )


@dataclass(frozen=True)
class Cores:
    """Which cores the server's processes and the clients may run on (both all, when not pinned)."""

    server: frozenset[int]
    client: frozenset[int]

    @property
    def pinned(self) -> bool:
        return not self.server & self.client

    @contextmanager
    def on_server_cores(self) -> Iterator[None]:
        """Inside, this process (and every process it starts, which inherits it) runs on the server's
        cores; after, on the clients'. Servers are started, and baselines run, inside."""
        os.sched_setaffinity(0, self.server)
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.client)


def split_cores(pin: bool) -> Cores:
    """The first half of this process's cores for the server, the rest for the clients; no split
    when `pin` is off or there is a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return Cores(frozenset(cores), frozenset(cores))
    half = (len(cores) + 1) // 2
    return Cores(frozenset(cores[:half]), frozenset(cores[half:]))


def span(values: Sequence[float], digits: int = 1) -> dict[str, object]:
    """The median and the range of several runs' values."""
    return {
        "median": round(statistics.median(values), digits),
        "range": [round(min(values), digits), round(max(values), digits)],
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
