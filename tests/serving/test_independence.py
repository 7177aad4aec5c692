"""The serving tests need no training kit: the serving image ships without it, and its tests show
that it can (their bundles come from `tests.serving.bundles`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_no_serving_test_imports_the_training_kit() -> None:
    for path in Path(__file__).parent.rglob("*.py"):
        assert not re.search(r"^\s*(from|import) training\b", path.read_text(), re.M), path


def test_the_bundle_package_and_the_torchserve_handler_load_without_grpc() -> None:
    """What a venv without grpcio would see: any import of gRPC fails."""
    code = (
        "import sys\n"
        "for name in ('grpc', 'grpc_health', 'grpc_reflection'): sys.modules[name] = None\n"
        "import serving.bundle, serving.torchserve_handler\n"
        "from serving.bundle.tasks import TASKS\n"
        "print(sorted(TASKS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['classify', 'multilabel', 'pose', 'segmentation', 'sentiment']"
