"""A model that answers NaN (a client sent NaN pixels, or the weights overflow) still answers valid
JSON: JSON has no NaN, so a non-finite number is `null`, which tritonclient.http reads back as NaN;
and numpy's warning about it is a log line like any other, not bare text on stderr."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from tests.serving.servers import ServerProcess, copy_bundle, running_server


def strict_json(text: bytes) -> object:
    """`json.loads` as strict parsers read JSON: the bare tokens NaN and Infinity are refused."""

    def refuse(token: str) -> object:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def models(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nan-models")
    copy_bundle(bundle_path, root)
    return root


def test_nan_outputs_are_answered_as_strict_json_nulls_and_the_warning_is_a_log_line(models: Path) -> None:
    with running_server(models) as server:
        answer = infer_nan_pixels(server)
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs == {"scores": [None] * 8, "labels": ["", ""]}  # no score is over its threshold
    records = [strict_json(line.encode()) for line in server.stderr.splitlines()]  # each line JSON
    warned = [r for r in records if isinstance(r, dict) and r["logger"] == "py.warnings"]
    assert warned and "RuntimeWarning" in warned[0]["message"]


def infer_nan_pixels(server: ServerProcess) -> dict[str, Any]:
    """Two all-NaN images, already prepared, sent as binary data; the answer in JSON."""
    pixels = np.full((2, 3, 32, 32), np.nan, np.float32).tobytes()
    tensor = {"name": "pixels", "shape": [2, 3, 32, 32], "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(pixels)}}]}).encode()
    request = urllib.request.Request(
        f"http://{server.http_address}/v2/models/tags/infer",
        header + pixels,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = strict_json(response.read())
    assert isinstance(answer, dict)
    return answer


def test_tritonclient_reads_the_nulls_back_as_nan(models: Path) -> None:
    with running_server(models) as server:
        assert server.http_address is not None
        with triton.InferenceServerClient(server.http_address) as client:
            tensor = triton.InferInput("pixels", [1, 3, 32, 32], "FP32")
            tensor.set_data_from_numpy(np.full((1, 3, 32, 32), np.nan, np.float32), binary_data=True)
            wanted = [triton.InferRequestedOutput("scores", binary_data=False)]
            scores = client.infer("tags", [tensor], outputs=wanted).as_numpy("scores")
    assert scores is not None and scores.shape == (1, 4) and np.isnan(scores).all()
