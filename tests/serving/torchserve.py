"""A real TorchServe (Java frontend + Python workers) on free loopback ports, always stopped after.

Each instance gets its own folder as TMPDIR (pid file, worker sockets, unpacked models) and its own
log folder, and is stopped with `ts.model_server --stop` under that same TMPDIR: killing the Python
launcher would orphan the Java server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TorchServe:
    inference: str
    management: str
    metrics: str
    logs: Path

    def model_log(self) -> str:
        path = self.logs / "model_log.log"
        return path.read_text() if path.exists() else ""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


@contextmanager
def running_torchserve(
    store: Path, models: str, root: Path, startup_timeout: float = 180
) -> Iterator[TorchServe]:
    """TorchServe serving `models` (`name=file.mar,...`) from `store`; waits until each has a READY worker."""
    root.mkdir(parents=True, exist_ok=True)
    ports = {key: free_port() for key in ("inference", "management", "metrics", "grpc", "grpc_m", "worker")}
    config = root / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{ports['inference']}",
                f"management_address=http://127.0.0.1:{ports['management']}",
                f"metrics_address=http://127.0.0.1:{ports['metrics']}",
                f"grpc_inference_port={ports['grpc']}",
                f"grpc_management_port={ports['grpc_m']}",
                f"initial_worker_port={ports['worker']}",
                "metrics_mode=prometheus",
                "default_workers_per_model=1",
                "install_py_dep_per_model=false",
                "disable_token_authorization=true",
                "enable_model_api=true",
                "max_request_size=67108864",
                "max_response_size=67108864",
            ]
        )
        + "\n"
    )
    tmp, logs = root / "tmp", root / "logs"
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
    }
    launcher = [sys.executable, "-m", "ts.model_server"]
    start = [
        *launcher,
        "--start",
        "--ts-config",
        str(config),
        "--model-store",
        str(store),
        "--models",
        models,
        "--ncs",
    ]
    # Output to a file, not a pipe: the Java server inherits the launcher's streams and outlives it.
    with (root / "launcher.log").open("w") as out:
        subprocess.run(start, env=env, cwd=root, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=60)
    server = TorchServe(
        f"http://127.0.0.1:{ports['inference']}",
        f"http://127.0.0.1:{ports['management']}",
        f"http://127.0.0.1:{ports['metrics']}",
        logs,
    )
    try:
        names = [entry.split("=")[0] for entry in models.split(",")]
        deadline = time.monotonic() + startup_timeout
        while not all(_ready(server, name) for name in names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"TorchServe workers never became READY:\n{server.model_log()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        with (root / "launcher.log").open("a") as out:
            subprocess.run(
                [*launcher, "--stop"], env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, timeout=60
            )


def _ready(server: TorchServe, name: str) -> bool:
    status, body = _get(f"{server.management}/models/{name}")
    if status != 200:
        return False
    workers = json.loads(body)[0].get("workers", [])
    return any(w.get("status") == "READY" for w in workers)
