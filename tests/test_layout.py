"""The layout page (docs/layout.md) follows the code: every package folder is named there, and the two
task registries list the same served tasks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_on_the_layout_page() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^ *([a-z_]+/(?:[a-z_]+/)?)", layout.split("```")[1], re.M))
    folders = {
        f"{init.parent.relative_to(ROOT / top).as_posix()}/"
        for top in ("serving", "training")
        for init in (ROOT / top).rglob("*/__init__.py")
    }
    missing = {folder for folder in folders if not any(n.endswith(folder) for n in named)}
    assert not missing, f"docs/layout.md does not name {sorted(missing)}"


def test_each_served_task_has_a_module_on_both_sides() -> None:
    shared = {"__init__", "base", "single_label"}
    served = {p.stem for p in (ROOT / "serving/bundle/tasks").glob("*.py")} - shared
    trained = {p.stem for p in (ROOT / "training/tasks").glob("*.py")} - {"__init__", "base"}
    assert served <= trained, f"served tasks without a training module: {sorted(served - trained)}"
