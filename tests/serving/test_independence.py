"""The serving tests need no training kit: the serving image ships without it, and its tests show
that it can (their bundles come from `tests.serving.bundles`)."""

from __future__ import annotations

import re
from pathlib import Path


def test_no_serving_test_imports_the_training_kit() -> None:
    for path in Path(__file__).parent.rglob("*.py"):
        assert not re.search(r"^\s*(from|import) training\b", path.read_text(), re.M), path
