"""The processes benchmark in a reduced form: the tests' tiny tags bundle served by one serve-kit and
by two on one port (reuse_port), one short window each. Nothing is timed here: the test checks what
the bench reports (both sides, requests answered by both processes), never how fast."""

from __future__ import annotations

from pathlib import Path

from tests.serving.benches import bench_report


def test_a_reduced_processes_run_reports_both_sides(bundle_path: Path) -> None:
    report = bench_report("processes.py", "--bundle", str(bundle_path), "--runs", "1",
                          "--warmup", "0.3", "--seconds", "1", "--clients", "8", timeout=120)  # fmt: skip
    assert report["bench"] == "processes" and report["runs"] == 1
    one, several = report["one"], report["several"]
    assert (one["processes"], several["processes"]) == (1, 2) and several["reuse_port"]
    assert one["inference_threads"] == 2 and several["inference_threads"] == 1
    for side in (one, several):
        assert side["requests_s"]["median"] > 0, side
        assert side["server_cpu_ms_per_request"]["median"] > 0, side
        assert 0 < side["p50_ms"]["median"] <= side["p99_ms"]["median"], side
        assert side["rss_mb_idle"] > 0 and side["rss_mb_after"]["median"] > 0, side
    assert len(one["requests_per_process"][0]) == 1 and one["requests_per_process"][0][0] > 0
    # each client holds its own connection, so the kernel gives both processes some of them
    assert len(several["requests_per_process"][0]) == 2, several
    assert min(several["requests_per_process"][0]) > 0 and report["every_process_answered"], several
    # two processes each hold their own runtime and model: more memory than one, idle
    assert several["rss_mb_idle"] > one["rss_mb_idle"], report
    assert report["ratio"]["requests_s"]["median"] > 0 and len(report["load_average"]["after"]) == 3
