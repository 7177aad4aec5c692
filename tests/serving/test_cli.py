"""`serve-kit`: every knob in --help, and a wrong setting stops it at once with the field named."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from serving.cli import app
from tests.serving.servers import ServerProcess, running_server

SERVE = [sys.executable, "-m", "serving.cli", "serve"]


def test_help_lists_every_knob_with_its_environment_variable() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for knob in [
        "SERVE_MODELS_DIR",
        "SERVE_BATCHING__MAX_QUEUE_DELAY_US",
        "SERVE_MAX_MESSAGE_MB (default 64)",
    ]:
        assert knob in result.output


def test_settings_prints_what_the_server_would_run_with(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f"models_dir = '{tmp_path}'\n[batching]\nmax_batch_size = 4\n")
    result = CliRunner().invoke(app, ["settings", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["batching"]["max_batch_size"] == 4


def test_a_wrong_setting_stops_the_server_before_it_listens(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("[batching]\nmax_batch_sise = 4\n")
    command = [*SERVE, "--models", str(tmp_path), "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "batching.max_batch_sise" in result.stderr and "Extra inputs are not permitted" in result.stderr


def test_the_health_probe_exits_zero_only_for_a_serving_server_or_model(server: ServerProcess) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["health", "--address", server.address])
    assert ok.exit_code == 0 and "(server): SERVING" in ok.output
    assert runner.invoke(app, ["health", "--address", server.address, "--service", "tags"]).exit_code == 0
    unknown = runner.invoke(app, ["health", "--address", server.address, "--service", "nope"])
    assert unknown.exit_code == 1 and "NOT_FOUND" in unknown.output
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    down = runner.invoke(app, ["health", "--address", closed, "--timeout", "1"])
    assert down.exit_code == 1 and "UNAVAILABLE" in down.output


def test_a_port_in_use_stops_a_second_server_unless_it_shares_on_purpose(tmp_path: Path) -> None:
    """gRPC shares a port by default (SO_REUSEPORT): a second server started by mistake on a busy port
    would silently take half of its calls. It stops instead, saying why; `reuse_port` shares on purpose."""
    models = tmp_path / "models"
    models.mkdir()
    env = {**os.environ, "SERVE_HTTP_PORT": "0", "SERVE_METRICS_PORT": "0"}
    with running_server(models) as first:
        cases = {"gRPC": ("--port", first.port), "HTTP": ("--http-port", first.http_port)}
        seconds = {  # both at once: each start imports the whole server
            which: subprocess.Popen(
                [*SERVE, "--models", str(models), "--port", "0", flag, str(port)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for which, (flag, port) in cases.items()
        }
        for which, second in seconds.items():
            _, err = second.communicate(timeout=120)
            assert second.returncode == 1, err[-2000:]
            assert f"cannot listen on 127.0.0.1:{cases[which][1]} ({which}): the port is in use" in err
            assert "Traceback" not in err
    shared = {"reuse_port": "true"}
    with running_server(models, **shared) as one, running_server(models, port=one.port, **shared) as two:
        assert two.port == one.port  # both listening, on one port
        assert one.process.poll() is None and two.process.poll() is None
