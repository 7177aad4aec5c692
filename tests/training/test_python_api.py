"""docs/python.md's code runs as it stands, from an empty folder: its quick start trains, exports,
loads the bundle and answers; its second block trains a learner on data read with the data block
API. The README's quick start is the page's, word for word."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from training.demo.fashion_mnist import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "python.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def blocks() -> list[str]:
    return PYTHON_BLOCK.findall(PAGE.read_text())


@pytest.fixture
def one_intra_op_thread() -> Iterator[None]:
    """One torch thread while the page's code runs, then the setting as it was: on a busy two-core
    machine two threads' spinning made its small batches about ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.exists(), reason="Debian package dataset-fashion-mnist not installed"
)


@needs_fashion_mnist
@pytest.mark.usefixtures("one_intra_op_thread")
def test_the_python_pages_code_trains_exports_loads_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the page's relative paths land here, whatever folder pytest runs from
    quick_start, pieces = blocks()
    names: dict[str, Any] = {}
    exec(compile(quick_start, f"{PAGE}: quick start", "exec"), names)
    (answer,) = names["answers"]
    labels = names["learn"].data.classes
    assert set(answer["scores"]) == set(labels) and set(answer["labels"]) <= set(labels)
    assert all(0 <= score <= 1 for score in answer["scores"].values())
    assert (tmp_path / "models" / "tiny" / "1" / "manifest.json").is_file()

    exec(compile(pieces, f"{PAGE}: the pieces", "exec"), names)
    scores = names["scores"]
    assert scores.shape == (1, len(names["data"].classes)) and bool(((scores >= 0) & (scores <= 1)).all())
    assert len(names["learn"].history) == 2


def test_the_readme_shows_the_pages_quick_start() -> None:
    assert blocks()[0] in (ROOT / "README.md").read_text()
