"""A real TorchServe (Java frontend + Python workers) on free loopback ports, always stopped after,
and `.mar` archives of bundles for it, packed by TorchServe's own torch-model-archiver.

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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from serving import torchserve_handler


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


def archive(bundle: Path, store: Path, batch_size: int = 8, max_batch_delay_ms: int = 300) -> str:
    """`store/<name>.mar`: the bundle's files unchanged, our handler, and a model-config.yaml with
    TorchServe's batching (one worker, one intra-op thread); returns its `--models` entry."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    manifest = json.loads((bundle / "manifest.json").read_text())
    name, files = manifest["name"], ["manifest.json", *manifest["files"]]
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "model-config.yaml"
        config.write_text(
            f"minWorkers: 1\nmaxWorkers: 1\nbatchSize: {batch_size}\nmaxBatchDelay: {max_batch_delay_ms}\n"
            "responseTimeout: 120\nhandler:\n  runtime: onnx\n  threads: 1\n"
        )
        generate_model_archive(
            ModelArchiverConfig(
                model_name=name,
                handler=torchserve_handler.__file__,
                version=str(manifest["version"]),
                extra_files=",".join(str(bundle / file) for file in files),
                export_path=str(store),
                config_file=str(config),
            )
        )
    return f"{name}={name}.mar"


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
