"""The LitServe comparison in a reduced form: the tests' tiny tags bundle served by serve-kit's HTTP
front end and by LitServe, one short window each at 2 clients. Nothing is timed here: the test checks
what the bench reports (both sides measured, the same graph, the same labels), never how fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.benches import bench_report

pytest.importorskip("litserve")  # the `bench` extra


def test_a_reduced_litserve_run_reports_both_sides(bundle_path: Path) -> None:
    report = bench_report("litserve_vs_serve.py", "--bundle", str(bundle_path),
                          "--runs", "1", "--warmup", "0.3", "--seconds", "0.3", "--clients", "2")  # fmt: skip
    assert report["bench"] == "litserve_vs_serve" and report["runs"] == 1 and report["clients"] == [2]
    # every image answered by both with the same labels (the bench exits otherwise), on one graph
    assert report["labels_match"] and report["images_checked"] == 2 and report["scores_max_diff"] < 1e-3
    assert report["graph"].startswith("onnxruntime")
    cell = report["concurrency"]["2"]
    for side in ("serve_kit", "litserve"):
        found = cell[side]
        assert found["requests_s"]["median"] > 0, found
        assert found["server_cpu_ms_per_request"]["median"] > 0, found
        assert 0 < found["p50_ms"]["median"] <= found["p99_ms"]["median"], found
        memory = report["memory"][side]
        assert memory["rss_mb_idle"]["median"] > 0 and memory["pss_mb_after_load"]["median"] > 0, memory
    assert report["memory"]["serve_kit"]["processes"] == 1
    assert report["memory"]["litserve"]["processes"] > 1  # its API server and inference worker count
    assert cell["ratio_requests_s"]["median"] > 0 and len(report["load_average"]["after"]) == 3
