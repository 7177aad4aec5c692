"""A benchmark's reduced run from the tests: `bench/<script>` in its own interpreter, its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def bench_report(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """What `bench/<script> args…` prints last, as JSON; the run must exit 0 (else its stderr's end)."""
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report
