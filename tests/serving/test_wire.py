"""The committed gRPC stubs are exactly what protos/generate.py makes from the .proto files."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_every_message_and_rpc_we_define_matches_tritons_own(tmp_path: Path) -> None:
    """Field by field (name, number, type, label) and method by method, against the protos inside
    tritonclient: a renumbered or retyped field would break unmodified Triton clients silently. The
    two cannot share a process (both register `inference.*`), so each side is described in its own."""
    ours = _describe("serving.wire.inference_pb2", "serving.wire.model_config_pb2")
    theirs = _describe("tritonclient.grpc.service_pb2", "tritonclient.grpc.model_config_pb2")
    assert set(ours["methods"]) <= set(theirs["methods"])
    for method, types in ours["methods"].items():
        assert types == theirs["methods"][method], method
    for name, fields in ours["messages"].items():
        assert name in theirs["messages"], f"{name} is not a Triton message"
        for field, described in fields.items():
            assert described == theirs["messages"][name].get(field), f"{name}.{field}"
    for name, values in ours["enums"].items():
        assert values.items() <= theirs["enums"][name].items(), name
    extensions = {"ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad"}
    assert extensions <= set(ours["methods"])


DESCRIBE = """
import importlib, json, sys
messages, enums, methods = {}, {}, {}
def walk(message):
    messages[message.full_name] = {
        f.name: [f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else
                 f.enum_type.full_name if f.enum_type else ""]
        for f in message.fields
    }
    for enum in message.enum_types:
        enums[enum.full_name] = {v.name: v.number for v in enum.values}
    for nested in message.nested_types:
        walk(nested)
for module in sys.argv[1:]:
    file = importlib.import_module(module).DESCRIPTOR
    for message in file.message_types_by_name.values():
        walk(message)
    for enum in file.enum_types_by_name.values():
        enums[enum.full_name] = {v.name: v.number for v in enum.values}
    for service in file.services_by_name.values():
        for m in service.methods:
            methods[m.name] = [m.input_type.full_name, m.output_type.full_name, m.server_streaming]
print(json.dumps({"messages": messages, "enums": enums, "methods": methods}))
"""


def _describe(*modules: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", DESCRIBE, *modules], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout)
