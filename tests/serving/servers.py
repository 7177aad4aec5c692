"""A real `serve-kit` process on a free 127.0.0.1 port, and helpers to fill its repository.

The server runs in its own process, as in production. (It must: tritonclient registers the
`inference.*` protobuf messages in the process-wide descriptor pool, so our stubs and its stubs
cannot be imported into one process.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LISTENING = re.compile(
    r"listening on 127\.0\.0\.1:(\d+)(?:, metrics on 127\.0\.0\.1:(\d+))?(?:, http on 127\.0\.0\.1:(\d+))?"
)


def copy_bundle(bundle_path: Path, models: Path, name: str = "tags", version: int = 1) -> Path:
    """Copy a bundle into `models/<name>/<version>` the way `publish` lands one: staged, then renamed."""
    staging = models / f".staging-{name}-{version}"
    shutil.copytree(bundle_path, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    if (manifest["name"], manifest["version"]) != (name, version):
        manifest.update(name=name, version=version)
        (staging / "manifest.json").write_text(json.dumps(manifest))
    target = models / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return target


class ServerProcess:
    def __init__(self, models: Path, env: dict[str, str], startup_timeout: float = 120) -> None:
        command = [sys.executable, "-m", "serving.cli", "serve", "--models", str(models)]
        if "SERVE_PORT" not in env:
            command += ["--port", "0"]
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.port, self.metrics_port, self.http_port = self._wait_until_listening(startup_timeout)
        self.address = f"127.0.0.1:{self.port}"
        self.http_address = f"127.0.0.1:{self.http_port}" if self.http_port else None
        self.exit_code: int | None = None
        self.stderr = ""

    def _wait_until_listening(self, timeout: float) -> tuple[int, int | None, int | None]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                ports = [int(found) if found else None for found in match.groups()]
                return int(match[1]), ports[1], ports[2]
        self.process.kill()
        _, err = self.process.communicate()
        raise RuntimeError(f"serve-kit did not start:\n{err[-3000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator would; the exit code (0 after a clean drain)."""
        if self.exit_code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                _, self.stderr = self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                _, self.stderr = self.process.communicate()
            self.exit_code = self.process.returncode
        return self.exit_code


@contextmanager
def running_server(models: Path, /, **settings: Any) -> Iterator[ServerProcess]:
    """`settings` become SERVE_* environment variables (nested with `__`: batching__max_batch_size)."""
    env = {
        "SERVE_METRICS_PORT": "0",
        "SERVE_HTTP_PORT": "0",  # like gRPC's --port 0: servers of parallel tests never collide
        "SERVE_POLL_INTERVAL_S": "0",
        "SERVE_LOG_FORMAT": "json",
    }
    env["SERVE_DRAIN_PRESTOP_S"] = "0"  # tests stop many servers; the drain tests set their own
    env.update({f"SERVE_{key.upper()}": str(value) for key, value in settings.items()})
    server = ServerProcess(models, env)
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"serve-kit exited {code} after SIGTERM:\n{server.stderr[-3000:]}"


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        sample, _, raw_labels = key.partition("{")
        got = ",".join(sorted(raw_labels.rstrip("}").split(","))) if raw_labels else ""
        if sample == name and got == wanted:
            return float(value)
    return 0.0
