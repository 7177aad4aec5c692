"""The HTTP and metrics listeners turn off with the word `none`, from a flag or a variable, as
`serve-kit serve --help` promises; the server then listens on gRPC alone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.serving.servers import running_server


def test_none_in_the_environment_starts_the_server_without_http_and_metrics(tmp_path: Path) -> None:
    with running_server(tmp_path, http_port="none", metrics_port="none") as server:
        assert server.port > 0
        assert (server.http_port, server.metrics_port) == (None, None)
    assert "Input should be a valid integer" not in server.stderr


def test_none_as_a_flag_starts_the_server_without_http_and_metrics(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "serving.cli", "serve", "--models", str(tmp_path), "--port", "0"]
    command += ["--http-port", "none", "--metrics-port", "none"]
    env = {**os.environ, "SERVE_POLL_INTERVAL_S": "0", "SERVE_DRAIN_PRESTOP_S": "0"}
    env.pop("SERVE_HTTP_PORT", None)
    env.pop("SERVE_METRICS_PORT", None)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line says where it listens, or it exited
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert re.fullmatch(r"serve-kit listening on 127\.0\.0\.1:\d+\n", line), (line, stderr[-2000:])
    assert process.returncode == 0, stderr[-2000:]
