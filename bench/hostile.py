"""Hostile requests against a real serve-kit process: what each costs the server, and whether it
still answers everyone else.

A tiny tags bundle (written by the serving tests' bundle writer, never trained: `--bundle` serves
another image bundle instead) is served by `serve-kit serve` on 127.0.0.1, one fresh process per case,
with the settings that case exercises. Cases (`--cases`, all by default):

- `memory`: one gRPC request of 8 flat 6300×6300 PNGs (39.7 MP each, ~1 MB on the wire, ~1 GB
  decoded) and one of a ~1.4 kB lossless 6000×6000 WebP, each on a fresh server with
  SERVE_MAX_INFLIGHT_MB=256 and SERVE_DECODE_THREADS=16: the rise of the server's resident peak
  (VmHWM, reset after a warm-up call through /proc/<pid>/clear_refs where the kernel allows) over
  its idle resident size, beside the budget, and whether the request was answered or refused;
- `turns`: a 1-JPEG call sent 0.5 s after four heavy requests (16 flat 2000×2000 PNGs each) on a
  server with 4 decode threads: its latency over several tries (median, max), beside the same call
  on the idle server;
- `abandon`: an HTTP request of 100 such PNGs on 1 decode thread (~10 s of decoding); after 1 s the
  client hangs up, or stays as the reference: the server's CPU seconds (utime + stime of
  /proc/<pid>/stat) in the 2 s after that moment, and in the 2 s after a further second;
- `probes`: gRPC ServerLive and HTTP /v2/health/live, each polled every ~20 ms from a thread, while
  the server handles a 9 kB brotli bomb (10 GiB of zeros; skipped without `brotli`), a 10 MB gzip
  bomb (10 GiB; 4 of each at once) and a 56 MB JSON infer body: the worst wait of each probe;
- `flood`: N half-open HTTP connections (they send nothing; `--connections`, default 21,000, the
  count that once exhausted the server's file table; the client closes those answered 503 to stay
  under its own limit) against SERVE_HTTP_MAX_CONNECTIONS (`--max-connections`, default 500): how
  many the server held and refused, whether a valid gRPC infer and a valid HTTP infer (on a
  connection opened before the flood, and on a new one) are answered, and how many lines the
  server wrote on stderr.

`--quick` runs each case once at smaller sizes (4 PNGs, a 20 MB JSON body,
600 connections against a cap of 200), for a test. Prints one JSON line; `promises` says which of
serve-kit's promises held (peak ≤ budget + 200 MiB or refused; the light call < 1 s; < 0.5 CPU-s
in the 2 s from 1 s after a hang-up; no probe waits 0.5 s; every valid call answered during the flood).

    python bench/hostile.py [--cases memory,turns,abandon,probes,flood] [--quick] [--tries 5]
        [--connections 21000] [--max-connections 500] [--bundle models/planet] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import resource
import select
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# tritonclient registers the `inference.*` protobuf messages process-wide: this process must never
# import serving.wire / v2 / server (serving.bundle and the tests' bundle writer are fine).
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import servers  # noqa: E402

from tests.serving.bundles import write_tags  # noqa: E402
from tests.serving.http_raw import ProbeWatch, connect, read_answer  # noqa: E402

CASES = ("memory", "turns", "abandon", "probes", "flood")
MODEL = "tags"
MiB = 1 << 20
BUDGET_MB = 256
PEAK_SLACK_MB = 200  # the promise: peak RSS over idle ≤ budget + this (the runtime's own arenas)
LIGHT_CALL_S = 1.0
ABANDONED_CPU_S = 0.5
PROBE_WAIT_S = 0.5


# --- the server --------------------------------------------------------------------------------


class Server(servers.Server):
    """`serve-kit serve` on free 127.0.0.1 ports (HTTP too), stderr to a file (counted, never a full
    pipe), with what the cases read of its process from /proc."""

    def __init__(self, models: Path, log: Path, **settings: object) -> None:
        env = {
            "SERVE_METRICS_PORT": "none",
            "SERVE_HTTP_PORT": "0",
            "SERVE_POLL_INTERVAL_S": "0",
            "SERVE_DEVICE": "cpu",
            "SERVE_LOG_FORMAT": "json",
            "SERVE_DRAIN_PRESTOP_S": "0",
        }
        env.update({f"SERVE_{key.upper()}": str(value) for key, value in settings.items()})
        super().__init__(models, env, log.open("w"), timeout=180)
        assert self.http_address is not None
        self.http = self.http_address

    def stderr_lines(self) -> int:
        return len(self.stderr().splitlines())

    def kib(self, field: str) -> int:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{self.pid}/status").read_text(), re.M)
        assert found is not None, f"/proc/{self.pid}/status has no {field}"
        return int(found[1])

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak(self) -> bool:
        """Start the resident peak (VmHWM) again from the resident size now, where the kernel lets us."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 60) -> int:
        code = super().stop(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
        return code


@contextlib.contextmanager
def serving(models: Path, log: Path, **settings: object) -> Iterator[Server]:
    server = Server(models, log, **settings)
    try:
        yield server
    finally:
        server.stop()


def wait_until_quiet(server: Server, below_s: float = 0.05, timeout: float = 30) -> None:
    """Until the server spends under `below_s` CPU-seconds in half a second (work cut or finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = server.cpu_s()
        time.sleep(0.5)
        if server.cpu_s() - before < below_s:
            return


# --- what clients send -------------------------------------------------------------------------


def flat_image(mode: str, side: int, fmt: str, **options: object) -> bytes:
    """A flat colour: megapixels that compress to almost nothing."""
    colour: Any = {"RGBA": (200, 40, 40, 90)}.get(mode, (200, 40, 40))
    buffer = io.BytesIO()
    Image.new(mode, (side, side), colour).save(buffer, fmt, **options)
    return buffer.getvalue()


def small_jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    """Coloured squares with noise, like the serving tests' tag images (the bundle's example batch)."""
    rng = np.random.default_rng(seed)
    colours = [(30, 60, 220), (40, 200, 40), (220, 40, 40)]
    out = []
    for i in range(count):
        pixels = np.empty((size, size, 3), np.int64)
        pixels[:] = colours[i % 3]
        pixels += rng.integers(-20, 20, pixels.shape)
        if i % 2:
            x, y = rng.integers(2, size // 2, 2)
            pixels[y : y + size // 3, x : x + size // 3] = 255
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


def images_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def http_infer(images: list[bytes]) -> bytes:
    """A raw V2 HTTP infer request of encoded images, as binary data after a JSON header."""
    body, header_length = servers.v2_images_body(images)
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n{servers.HEADER_LENGTH}: {header_length}\r\n\r\n"
    )
    return head.encode() + body


def gzip_bomb(segments: int) -> bytes:
    """~1 kB of gzip per MiB of zeros it inflates to: fully flushed segments are identical."""
    zeros = bytes(MiB)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + again * segments


def brotli_bomb(gib: int) -> bytes | None:
    """~14 bytes of br per 16 MiB of zeros it inflates to; None without the brotli module."""
    try:
        import brotli
    except ImportError:
        return None
    zeros = bytes(16 * MiB)
    packer = brotli.Compressor(quality=5, lgwin=24)
    first = packer.process(zeros) + packer.flush()
    again = packer.process(zeros) + packer.flush()
    return bytes(first + again * (gib * 64 - 1))


def json_body(items: int) -> bytes:
    """An infer body of `items` 3×32×32 tensors as JSON numbers at full precision (~20 bytes each)."""
    pixels = np.random.default_rng(0).random((items, 3, 32, 32))
    request = {
        "inputs": [
            {"name": "pixels", "shape": [items, 3, 32, 32], "datatype": "FP32", "data": pixels.tolist()}
        ],
        "outputs": [{"name": "scores", "parameters": {"binary_data": False}}],
    }
    return json.dumps(request).encode()


# --- raw HTTP ------------------------------------------------------------------------------------


def answer_status(sock: socket.socket, timeout: float = 60) -> int | None:
    """The status of one answer on `sock`; None if the connection was cut."""
    answer = read_answer(sock, timeout)
    return None if answer is None else answer[0]


def post(address: str, path: str, body: bytes, **headers: str) -> int:
    request = urllib.request.Request(f"http://{address}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)


# --- the cases -----------------------------------------------------------------------------------


def memory_case(models: Path, tmp: Path, name: str, images: list[bytes], rgb_mb: float) -> dict[str, object]:
    """One gRPC request of `images` on a fresh server with a 256 MiB budget and 16 decode threads."""
    with serving(models, tmp / f"memory-{name}.log", max_inflight_mb=BUDGET_MB, decode_threads=16) as server:
        client = triton.InferenceServerClient(server.address)
        client.infer(MODEL, [images_input([flat_image("RGB", 64, "PNG")])])  # warm: pools and arenas
        reset = server.reset_peak()
        idle = server.kib("VmRSS")
        began = time.monotonic()
        try:
            result = client.infer(MODEL, [images_input(images)], client_timeout=300)
            status, detail = "answered", f"scores {list(result.as_numpy('scores').shape)}"
        except InferenceServerException as err:
            status, detail = "refused", f"{err.status()}: {err.message()[:240]}"
        seconds = time.monotonic() - began
        peak = (server.kib("VmHWM") - idle) / 1024
        client.close()
    return {
        "request": f"gRPC, {len(images)} × {name}",
        "wire_kb": round(sum(len(i) for i in images) / 1024, 1),
        "decoded_rgb_mb": round(rgb_mb, 1),
        "budget_mb": BUDGET_MB,
        "idle_rss_mb": round(idle / 1024, 1),
        "peak_over_idle_mb": round(peak, 1),
        "peak_reset": "clear_refs after a warm-up call" if reset else "fresh process (startup peak included)",
        "status": status,
        "detail": detail,
        "seconds": round(seconds, 2),
    }


def run_memory(models: Path, tmp: Path, quick: bool) -> dict[str, object]:
    count = 4 if quick else 8
    pngs = [flat_image("RGB", 6300, "PNG")] * count
    webp = flat_image("RGB", 6000, "WEBP", lossless=True)
    cases = {
        "png": memory_case(models, tmp, "6300×6300 flat PNG", pngs, count * 6300**2 * 3 / MiB),
        "webp": memory_case(models, tmp, "6000×6000 lossless WebP", [webp], 6000**2 * 3 / MiB),
    }
    return {
        **cases,
        "held": all(
            c["status"] == "refused" or float(c["peak_over_idle_mb"]) <= BUDGET_MB + PEAK_SLACK_MB  # type: ignore[arg-type]
            for c in cases.values()
        ),
    }


def run_turns(models: Path, tmp: Path, quick: bool, tries: int) -> dict[str, object]:
    """A 1-JPEG call 0.5 s after four heavy requests of 16 flat 2000×2000 PNGs each, 4 decode threads
    (with 8 each, an idle machine finished them before the light call came: nothing measured)."""
    heavy = [flat_image("RGB", 2000, "PNG")] * 16
    jpeg = small_jpegs(1, 256, seed=3)
    latencies, idle, valid = [], [], []
    with serving(models, tmp / "turns.log", decode_threads=4) as server:
        client = triton.InferenceServerClient(server.address)
        for _ in range(3):
            began = time.monotonic()
            client.infer(MODEL, [images_input(jpeg)])
            idle.append(time.monotonic() - began)
        for _ in range(1 if quick else tries):
            finished: list[float] = []
            with ThreadPoolExecutor(4) as pool:
                calls = [pool.submit(heavy_call, server.address, heavy, finished) for _ in range(4)]
                time.sleep(0.5)  # the heavy requests' items fill the decode pool
                began = time.monotonic()
                client.infer(MODEL, [images_input(jpeg)], client_timeout=120)
                answered = time.monotonic()
                for call in calls:
                    call.result()
            latencies.append(answered - began)
            valid.append(len(finished) == 4 and max(finished) > answered)
        client.close()
    return {
        "heavy": f"4 requests × {len(heavy)} flat 2000×2000 PNGs, 4 decode threads",
        "light": "1 JPEG of 256 px, sent 0.5 s after them",
        "tries": len(latencies),
        "light_s_median": round(statistics.median(latencies), 3),
        "light_s_max": round(max(latencies), 3),
        "light_s_runs": [round(x, 3) for x in latencies],
        "light_s_idle_median": round(statistics.median(idle), 3),
        "heavy_still_running_when_answered": valid,  # else the heavy ones were over: no measure
        "held": max(latencies) < LIGHT_CALL_S and all(valid),
    }


def heavy_call(address: str, heavy: list[bytes], finished: list[float]) -> None:
    """One heavy gRPC request on its own channel; when it was answered goes in `finished`."""
    with triton.InferenceServerClient(address) as own:
        own.infer(MODEL, [images_input(heavy)], client_timeout=300)
    finished.append(time.monotonic())


def heavy_http(images: int) -> bytes:
    """An HTTP infer request of `images` flat 2000×2000 PNGs (16 kB each, ~0.1 s each to decode)."""
    return http_infer([flat_image("RGB", 2000, "PNG")] * images)


def run_abandon(models: Path, tmp: Path) -> dict[str, object]:
    """CPU the server spends after a client hangs up on ~10 s of decoding, and after one that stays."""
    request = heavy_http(100)
    sides = {}
    with serving(models, tmp / "abandon.log", decode_threads=1, max_inflight_mb=8192) as server:
        for side in ("stays", "hangs_up"):
            wait_until_quiet(server)
            sock = connect(server.http)
            sock.sendall(request)
            start = server.cpu_s()
            time.sleep(1.0)
            decoding = server.cpu_s() - start
            if side == "hangs_up":
                sock.close()  # the client goes away
            marks = [server.cpu_s()]
            for pause in (1.0, 1.0, 1.0):
                time.sleep(pause)
                marks.append(server.cpu_s())
            if side == "stays":
                sock.close()  # done measuring: its work goes with it
            sides[side] = {
                "cpu_s_first_1s_decoding": round(decoding, 2),
                "cpu_s_2s_after": round(marks[2] - marks[0], 2),
                "cpu_s_2s_after_1s_grace": round(marks[3] - marks[1], 2),
            }
        wait_until_quiet(server)
        with connect(server.http) as probe:
            probe.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            live = answer_status(probe, 10)
    gone = sides["hangs_up"]
    return {
        "request": "HTTP, 100 flat 2000×2000 PNGs, 1 decode thread (~10 s of decoding)",
        **sides,
        "live_after": live,
        "held": gone["cpu_s_2s_after_1s_grace"] < ABANDONED_CPU_S and live == 200,
    }


def run_probes(models: Path, tmp: Path, quick: bool) -> dict[str, object]:
    items = 300 if quick else 900
    payloads: dict[str, tuple[bytes | None, dict[str, str], int]] = {
        "brotli_bomb": (brotli_bomb(10), {"Content-Encoding": "br"}, 4),
        "gzip_bomb": (gzip_bomb(10_000), {"Content-Encoding": "gzip"}, 4),
        "json_body": (json_body(items), {"Content-Type": "application/json"}, 1),
    }
    results: dict[str, object] = {}
    worst = 0.0
    with serving(models, tmp / "probes.log", max_message_mb=64, batching__max_batch_size=64) as server:
        for name, (body, headers, senders) in payloads.items():
            if body is None:
                results[name] = {"skipped": "brotli is not installed"}
                continue
            began = time.monotonic()
            with ProbeWatch(server.address, server.http) as watch, ThreadPoolExecutor(senders) as pool:
                sent = [pool.submit(post, server.http, f"/v2/models/{MODEL}/infer", body, **headers)
                        for _ in range(senders)]  # fmt: skip
                statuses = [answer.result() for answer in sent]
                time.sleep(0.3)  # probes after the answers too: nothing goes on in the background
            worst = max(worst, *watch.waits.values())
            results[name] = {
                "body_bytes": len(body),
                "inflates_to_gib": 10 if "bomb" in name else None,
                "concurrent": senders,
                "statuses": statuses,
                "seconds": round(time.monotonic() - began, 2),
                "probes": watch.probes,
                "worst_grpc_s": round(watch.waits["grpc"], 3),
                "worst_http_s": round(watch.waits["http"], 3),
            }
    answered = [r for r in results.values() if isinstance(r, dict) and "probes" in r]
    return {
        **results,
        "json_items": items,
        "worst_probe_s": round(worst, 3),
        "held": worst < PROBE_WAIT_S and all(int(r["probes"]) > 4 for r in answered),
    }


def readable(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has answered or closed (poll: select stops at fd 1024)."""
    watch = select.poll()
    for sock in sockets:
        watch.register(sock, select.POLLIN)
    return len(watch.poll(0))


def shed_refused(sockets: list[socket.socket]) -> int:
    """Close and drop the sockets the server has answered (its 503 over the cap); how many. A
    client of 21,000 connections needs this below its own open-file limit (20,000 here)."""
    watch = select.poll()
    by_fd = {sock.fileno(): sock for sock in sockets}
    for fd in by_fd:
        watch.register(fd, select.POLLIN)
    done = {fd for fd, _ in watch.poll(0)}
    for fd in done:
        by_fd[fd].close()
    sockets[:] = [sock for fd, sock in by_fd.items() if fd not in done]
    return len(done)


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


KEPT_EVERY_S = 20.0
"""The connection opened before the flood calls again this often: a long flood outlasts the idle
timeout (75 s), which rightly closes a connection that sends nothing."""


def run_flood(models: Path, tmp: Path, connections: int, cap: int) -> dict[str, object]:
    """`connections` half-open HTTP connections against a cap of `cap`; are valid calls answered?"""
    limit = raise_open_files(4 * cap + 2048)  # the server inherits it: its cap stays
    jpeg = small_jpegs(1, 64, seed=4)
    valid = http_infer(jpeg)
    flood: list[socket.socket] = []
    with serving(models, tmp / "flood.log", http_max_connections=cap) as server:
        client = triton.InferenceServerClient(server.address)
        client.infer(MODEL, [images_input(jpeg)])
        kept = connect(server.http)  # opened before the flood, and used once
        kept.sendall(valid)
        kept_before = answer_status(kept)
        lines_before = server.stderr_lines()
        began, failed, slow, cpu, shed = time.monotonic(), 0, 0, server.cpu_s(), 0
        used, kept_meanwhile = began, []
        for _ in range(connections):
            if time.monotonic() - used > KEPT_EVERY_S:  # a client that keeps calling is never idle
                kept.sendall(valid)
                kept_meanwhile.append(answer_status(kept, 30))
                used = time.monotonic()
            connect_began = time.monotonic()
            try:
                flood.append(connect(server.http, timeout=10))
            except OSError:
                failed += 1
            slow += time.monotonic() - connect_began > 0.5  # a SYN resent: the accept queue was full
            if len(flood) >= cap + 1024:
                shed += shed_refused(flood)
        opened_s, cpu = time.monotonic() - began, server.cpu_s() - cpu
        time.sleep(0.5)  # the server has taken them all in
        refused = shed + readable(flood)
        try:
            call_began = time.monotonic()
            grpc_ok = (
                client.infer(MODEL, [images_input(jpeg)], client_timeout=30).as_numpy("scores") is not None
            )
            grpc_s = time.monotonic() - call_began
        except InferenceServerException as err:
            grpc_ok, grpc_s = False, float("nan")
            print(f"flood: gRPC infer failed: {err}", file=sys.stderr)
        call_began = time.monotonic()
        kept.sendall(valid)
        kept_during = answer_status(kept, 30)
        kept_s = time.monotonic() - call_began
        try:  # the cap is full: a new connection is answered 503 until one closes
            with connect(server.http) as fresh:
                fresh.sendall(valid)
                fresh_during = answer_status(fresh, 30)
        except OSError:
            fresh_during = None
        kept.close()
        for sock in flood:
            sock.close()
        after_began, fresh_after = time.monotonic(), None
        while fresh_after != 200 and time.monotonic() - after_began < 10:
            with contextlib.suppress(OSError), connect(server.http) as fresh:
                fresh.sendall(valid)
                fresh_after = answer_status(fresh, 30)
            if fresh_after != 200:
                time.sleep(0.1)
        after_s = time.monotonic() - after_began
        lines_during = server.stderr_lines() - lines_before
        client.close()
        exit_code = server.stop()
        lines = server.stderr()
    return {
        "connections": connections,
        "http_max_connections": cap,
        "client_open_files": limit,
        "connect_failed": failed,
        "opened_s": round(opened_s, 2),
        "connects_over_0_5s": slow,
        "server_cpu_s_while_opening": round(cpu, 2),
        "held_open": len(flood) + shed - refused,
        "refused_503": refused,
        "grpc_infer_answered": grpc_ok,
        "grpc_infer_s": round(grpc_s, 3),
        "http_infer_kept_connection_status": kept_during,
        "http_infer_kept_connection_s": round(kept_s, 3),
        "http_before_flood_status": kept_before,
        "http_kept_connection_statuses_meanwhile": kept_meanwhile,
        "http_infer_new_connection_status_during": fresh_during,
        "http_infer_new_connection_status_after_close": fresh_after,
        "http_new_connection_answered_after_s": round(after_s, 2),
        "stderr_lines_during": lines_during,
        "stderr_lines_total": len(lines.splitlines()),
        "stderr_tracebacks": lines.count("Traceback"),
        "exit_code": exit_code,
        "held": grpc_ok
        and kept_during == 200
        and all(status == 200 for status in kept_meanwhile)
        and fresh_after == 200
        and exit_code == 0,
    }


# --- main ----------------------------------------------------------------------------------------


def repository(args: argparse.Namespace, tmp: Path) -> Path:
    """`tmp/models/tags/1`: the given bundle renamed, or the tests' tiny tags bundle written now."""
    models = tmp / "models"
    target = models / MODEL / "1"
    if args.bundle is None:
        written = write_tags(tmp / "written", small_jpegs(24, 32))
        shutil.copytree(written, target)
    else:
        shutil.copytree(args.bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(name=MODEL, version=1)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="each case once, smaller sizes (for a test)")
    parser.add_argument("--tries", type=int, default=5, help="light calls behind heavy ones (turns)")
    parser.add_argument(
        "--connections", type=int, default=None, help="half-open connections (21000; quick 600)"
    )
    parser.add_argument(
        "--max-connections", type=int, default=None, help="SERVE_HTTP_MAX_CONNECTIONS (500; quick 200)"
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="an image bundle to serve (default: a tiny one)"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep each server's stderr in this folder")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    connections = args.connections or (600 if args.quick else 21_000)
    cap = args.max_connections or (200 if args.quick else 500)

    load_start, began = os.getloadavg(), time.monotonic()
    report: dict[str, object] = {
        "bench": "hostile",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "cases": cases,
        "cpus": os.cpu_count(),
    }
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        tmp = Path(name)
        models = repository(args, tmp)
        runs: dict[str, Callable[[], dict[str, object]]] = {
            "memory": lambda: run_memory(models, tmp, args.quick),
            "turns": lambda: run_turns(models, tmp, args.quick, args.tries),
            "abandon": lambda: run_abandon(models, tmp),
            "probes": lambda: run_probes(models, tmp, args.quick),
            "flood": lambda: run_flood(models, tmp, connections, cap),
        }
        for case in cases:
            case_began = time.monotonic()
            report[case] = runs[case]()
            print(f"{case}: {json.dumps(report[case], ensure_ascii=False)}", file=sys.stderr, flush=True)
            timings[case] = round(time.monotonic() - case_began, 1)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, args.logs / log.name)
    report["promises"] = {case: report[case]["held"] for case in cases}  # type: ignore[index]
    report["ok"] = all(report["promises"].values())  # type: ignore[attr-defined]
    report["case_wall_s"] = timings
    report["wall_s"] = round(time.monotonic() - began, 1)
    report["load_average"] = {
        "start": [round(x, 2) for x in load_start],
        "end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
