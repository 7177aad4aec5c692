"""The server-against-raw-runtime bench in a reduced form, over each protocol: the tests' tiny tags
bundle, one short window per side. Nothing is timed here: the test checks what the bench reports
(both inputs, both sides, the ratio of the two), never how fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.benches import bench_report


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_reduced_serve_throughput_run_reports_both_sides(bundle_path: Path, protocol: str) -> None:
    report = bench_report("serve_throughput.py", "--bundle", str(bundle_path), "--protocol", protocol,
                          "--runs", "1", "--warmup", "0.2", "--seconds", "0.3", "--clients", "4")  # fmt: skip
    assert report["bench"] == "serve_throughput" and report["protocol"] == protocol
    (task,) = report["tasks"].values()
    assert task["graph"].startswith("onnxruntime")
    for kind in ("fp32", "jpeg"):
        found = task[kind]
        assert found["server_items_s"] > 0 and found["raw_items_s"] > 0, found
        assert found["ratio"] == pytest.approx(found["server_items_s"] / found["raw_items_s"], rel=0.01)
        assert found["server_cpu_us_per_item"]["median"] > 0 and found["server_mean_batch"] >= 1, found
    one = task["jpeg_one_per_run"]  # the same JPEG windows against the runtime run one image at a time
    assert one["raw_items_s"] > 0 and len(one["raw_runs"]) == 1
    assert one["ratio"] == pytest.approx(task["jpeg"]["server_items_s"] / one["raw_items_s"], rel=0.01)
