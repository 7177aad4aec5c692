from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import write_tag_images


@pytest.fixture
def small_tags(tmp_path: Path) -> Path:
    """A private, writable tag set: 12 images of 16px (img_000…img_011), the last 3 in valid.txt.

    Row `img_00i` is on line i + 2 of labels.csv; even rows have one colour tag, odd rows add "square".
    """
    return write_tag_images(tmp_path / "tags", n=12, n_valid=3, size=16)


@pytest.fixture(autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """Run per-image work single-threaded, as DataLoader workers do, then restore the setting.

    Tiny per-sample tensor ops gain nothing from intra-op threads, and on a busy two-core machine
    their spinning made in-process (num_workers=0) augmentation about 50 times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
