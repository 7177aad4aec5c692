"""The hostile-requests benchmark in its quick form: every case run once against a real serve-kit at
smaller sizes, one JSON line with every section, and serve-kit's promises held at that size."""

from __future__ import annotations

from pathlib import Path

from tests.serving.benches import bench_report

SECTIONS = ("memory", "turns", "abandon", "probes", "flood")


def test_a_quick_hostile_run_reports_every_case_and_the_promises_hold(bundle_path: Path) -> None:
    report = bench_report("hostile.py", "--quick", "--bundle", str(bundle_path))
    assert report["bench"] == "hostile" and report["quick"] and report["cases"] == list(SECTIONS)
    assert all(section in report for section in SECTIONS), sorted(report)
    assert report["wall_s"] > 0 and len(report["load_average"]["end"]) == 3

    memory = report["memory"]
    for case in ("png", "webp"):
        found = memory[case]
        assert found["budget_mb"] == 256 and found["status"] in ("answered", "refused"), found
        # refused, or decoded within the budget (+200 MiB for the runtime's own arenas)
        assert found["status"] == "refused" or found["peak_over_idle_mb"] <= 256 + 200, found
    assert memory["png"]["status"] == "answered", memory["png"]  # it fits: 4 × 114 MiB, in turns

    turns = report["turns"]
    assert all(turns["heavy_still_running_when_answered"]), turns  # else nothing was measured
    assert turns["light_s_max"] < 1.0, turns

    abandon = report["abandon"]
    assert abandon["stays"]["cpu_s_2s_after"] > 0.2, abandon  # the reference: decoding goes on
    assert abandon["hangs_up"]["cpu_s_2s_after_1s_grace"] < 0.5, abandon
    assert abandon["live_after"] == 200

    probes = report["probes"]
    for name in ("brotli_bomb", "gzip_bomb", "json_body"):
        if "skipped" in probes[name]:
            continue
        found = probes[name]
        assert found["probes"] > 4 and found["worst_grpc_s"] < 0.5 and found["worst_http_s"] < 0.5, found
        assert set(found["statuses"]) == ({200} if name == "json_body" else {413}), found

    flood = report["flood"]
    assert flood["connect_failed"] == 0 and flood["refused_503"] > 0, flood  # the cap was reached
    assert flood["held_open"] < flood["http_max_connections"], flood  # the kept one counts too
    assert flood["grpc_infer_answered"] and flood["http_infer_kept_connection_status"] == 200, flood
    assert flood["http_infer_new_connection_status_during"] == 503, flood  # the cap holds
    assert flood["http_infer_new_connection_status_after_close"] == 200, flood
    assert flood["exit_code"] == 0 and flood["stderr_tracebacks"] == 0, flood

    assert report["ok"] and all(report["promises"].values()), report["promises"]
