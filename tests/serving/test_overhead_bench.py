"""The overhead benchmark in a reduced form: a null bundle served, every side's answers checked,
one JSON line with the server's CPU per request beside the model's own. Nothing is timed here: the
test checks what the bench reports, never how fast."""

from __future__ import annotations

from tests.serving.benches import bench_report


def test_a_reduced_overhead_run_reports_every_side() -> None:
    report = bench_report("overhead.py", "--runs", "1", "--warmup", "0.2", "--seconds", "0.5",
                          "--concurrency", "4", "--sides", "serve_kit,in_process,grpc_echo")  # fmt: skip
    assert report["bench"] == "overhead" and report["model_cpu_us_per_item"]["pixels"] > 0
    cells = {(r["side"], r["input"], r["concurrency"]) for r in report["rows"]}
    sides = ("serve_kit", "in_process", "grpc_echo")
    assert cells == {(s, i, 4) for s in sides for i in ("pixels", "jpeg")}
    for row in report["rows"]:
        assert row["requests_s"]["median"] > 0 and row["server_cpu_us_per_request"]["median"] > 0, row
    assert report["serve_kit_pixels_overhead_us_worst"] is not None
    assert report["target_met"] == (report["serve_kit_pixels_overhead_us_worst"] <= report["target_us"])
