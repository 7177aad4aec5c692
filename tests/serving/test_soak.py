"""The soak benchmark in a reduced form: 600 requests, 5 % hostile, nothing lost, memory flat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_reduced_soak_holds_every_promise(bundle_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "soak.py"), "--requests", "600", "--concurrency", "32",
               "--bundle", str(bundle_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"], json.dumps(report)  # in full: which promise failed
    assert report["unexpected"] == 0 and not report["crashed"] and report["exit_code"] == 0
    assert report["hostile"] > 0 and report["codes"]["OK"] == 600 - report["hostile"]
    assert len(report["rss_mb"]) == 10 and report["rss_growth_2nd_to_last"] < 0.10
