"""The committed gRPC stubs are exactly what protos/generate.py makes from the .proto files."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    generate = runpy.run_path(str(ROOT / "protos" / "generate.py"))["generate"]
    fresh = generate(tmp_path)
    assert [p.name for p in fresh] == sorted(p.name for p in (ROOT / "serving" / "wire").glob("*_pb2*.py*"))
    for path in fresh:
        committed = ROOT / "serving" / "wire" / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run python protos/generate.py"
        )


def test_the_v2_service_keeps_the_names_standard_clients_call() -> None:
    text = (ROOT / "protos" / "inference.proto").read_text()
    assert "package inference;" in text and "service GRPCInferenceService {" in text
    for method in [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]:
        assert f"rpc {method}({method}Request) returns ({method}Response)" in text
