from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import write_tag_images


@pytest.fixture
def small_tags(tmp_path: Path) -> Path:
    """A private, writable tag set: 12 images of 16px (img_000…img_011), the last 3 in valid.txt.

    Row `img_00i` is on line i + 2 of labels.csv; even rows have one colour tag, odd rows add "square".
    """
    return write_tag_images(tmp_path / "tags", n=12, n_valid=3, size=16)
