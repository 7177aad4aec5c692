"""The Dockerfile stays in step with the code: no Docker engine runs here, so its promises are read.

What it copies, installs, exposes, sets and runs is checked against pyproject.toml, the settings
model and the CLI, so a renamed setting, port, extra or command fails here, not in a deployment.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from serving.cli import app
from serving.server.settings import ServerSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_only_serving_code_goes_into_the_image() -> None:
    sources = [shlex.split(args)[:-1] for op, args in instructions() if op == "COPY" and "--from" not in args]
    copied = {Path(s).name for group in sources for s in group}
    assert copied == {"pyproject.toml", "README.md", "serving"}  # no training code, data, models or tests
    for path in (ROOT / "serving").rglob("*.py"):
        assert not re.search(r"^\s*(from|import) training\b", path.read_text(), re.M), path  # the one rule


def test_the_install_names_real_extras_and_swaps_the_onnxruntime_that_pyproject_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    for target in re.findall(r"pip install [^&]*?(/src(?:\[[^\]]*\])?)", runs):
        extras = re.findall(r"\[([^\]]*)\]", target)
        assert all(e in project["optional-dependencies"] for group in extras for e in group.split(","))
    base = {re.split(r"[<>=!\[; ]", dep)[0] for dep in project["dependencies"]}
    assert "onnxruntime" in base and "pip uninstall --yes onnxruntime" in runs
    assert "onnxruntime-gpu" in runs


def test_ports_settings_and_user_agree_with_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stage = final_stage()
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for op, args in stage if op == "ENV")))
    serve_env = {k: v for k, v in env.items() if k.startswith("SERVE_")}
    assert serve_env, "the image configures the server through SERVE_* variables"
    assert serve_env["SERVE_MODELS_DIR"] == "/models"  # the VOLUME below; it exists only in the image
    for key, value in serve_env.items():
        monkeypatch.setenv(key, str(tmp_path) if key == "SERVE_MODELS_DIR" else value)
    settings = load_settings()  # an unknown or invalid SERVE_* variable raises here
    assert settings.host == "0.0.0.0" and settings.device == "auto"
    exposed = {int(p) for op, args in stage if op == "EXPOSE" for p in args.split()}
    defaults = ServerSettings.model_fields
    assert exposed == {defaults[p].default for p in ("http_port", "port", "metrics_port")}
    users = [args for op, args in stage if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [json.loads(args) for op, args in stage if op == "VOLUME"] == [["/models"]]


def test_entrypoint_and_healthcheck_are_commands_the_cli_has() -> None:
    stage = final_stage()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    (entrypoint,) = [json.loads(args) for op, args in stage if op == "ENTRYPOINT"]
    (healthcheck,) = [args for op, args in stage if op == "HEALTHCHECK"]
    probe = json.loads(healthcheck.split("CMD", 1)[1])
    for command in (entrypoint, probe):
        assert command[0] in scripts and scripts[command[0]].startswith("serving.")
        assert command[1] in commands
    assert probe[1] == "health" and entrypoint[1] == "serve"


def test_the_cpu_target_installs_no_torch() -> None:
    """`--target cpu`: the base install only, and the base names no torch (its runtime is an extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=!\[; ]", dep)[0] for dep in project["dependencies"]}
    assert not base & {"torch", "torchvision"}
    steps = instructions()
    start = next(i for i, (op, args) in enumerate(steps) if op == "FROM" and args.endswith(" AS cpu"))
    end = next(i for i, (op, _) in enumerate(steps) if op == "FROM" and i > start)
    runs = " ".join(args for op, args in steps[start:end] if op == "RUN")
    assert re.findall(r"pip install \S+ (/src\S*)", runs) == ["/src"]
    assert "torch" not in runs
    (healthcheck,) = [args for op, args in steps[start:end] if op == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["serve-kit", "health"]')


def test_what_the_cpu_target_installs_resolves_without_torch(tmp_path: Path) -> None:
    """The base install's whole dependency tree, resolved by pip as the CPU image's build would
    (`--dry-run`: nothing is installed), holds no torch: no dependency of a dependency brings it."""
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    installs = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"onnxruntime", "pillow", "numpy", "grpcio"} <= installs
    assert not installs & {"torch", "torchvision", "nvidia-cudnn-cu12", "triton"}
