"""deploy/ manifests agree with the code: image, ports, probes, settings, and the drain's time budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.server.settings import ServerSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ServerSettings.model_fields


def documents(name: str) -> dict[str, dict[str, Any]]:
    """The manifests of `deploy/<name>`, by kind."""
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]
    return {d["kind"]: d for d in docs}


def containers() -> list[dict[str, Any]]:
    deployment = documents("kubernetes.yaml")["Deployment"]["spec"]["template"]["spec"]
    predictor = documents("kserve.yaml")["InferenceService"]["spec"]["predictor"]
    return [*deployment["containers"], *predictor["containers"]]


def test_every_container_runs_the_image_the_dockerfile_builds() -> None:
    built = re.search(r"docker build -t (\S+) \.", (ROOT / "Dockerfile").read_text())
    assert built is not None
    assert {c["image"].split(":")[0] for c in containers()} == {built.group(1)}


def test_ports_and_probes_are_the_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    grpc_port, metrics_port = DEFAULTS["port"].default, DEFAULTS["metrics_port"].default
    http_port = DEFAULTS["http_port"].default
    for container in containers():
        ports = {p["containerPort"] for p in container["ports"]}
        assert grpc_port in ports and ports <= {http_port, grpc_port, metrics_port}
        assert container["readinessProbe"]["grpc"]["port"] == grpc_port  # grpc.health.v1, which we serve
        for variable in container["env"]:
            value = str(tmp_path) if variable["name"] == "SERVE_MODELS_DIR" else variable["value"]
            monkeypatch.setenv(variable["name"], value)
        load_settings()  # an unknown or invalid SERVE_* variable raises
        for mount in container["volumeMounts"]:
            assert mount["readOnly"] and mount["mountPath"] == "/models"
    (kserve,) = documents("kserve.yaml")["InferenceService"]["spec"]["predictor"]["containers"]
    assert kserve["ports"] == [
        {"name": "h2c", "containerPort": grpc_port, "protocol": "TCP"}
    ]  # KServe's gRPC


def test_the_service_and_autoscaler_point_at_the_deployment() -> None:
    docs = documents("kubernetes.yaml")
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    named = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_the_pod_outlives_its_drain() -> None:
    spec = documents("kubernetes.yaml")["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {v["name"]: v["value"] for v in container["env"]}
    drain = float(env["SERVE_DRAIN_PRESTOP_S"]) + float(env["SERVE_DRAIN_TIMEOUT_S"])
    assert spec["terminationGracePeriodSeconds"] > drain  # SIGKILL only after in-flight calls are answered
    limit = int(container["resources"]["limits"]["memory"].removesuffix("Gi")) << 10
    assert int(env["SERVE_MAX_INFLIGHT_MB"]) <= limit // 2  # requests may never crowd out the models
    assert spec["securityContext"]["runAsNonRoot"]
