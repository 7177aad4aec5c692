"""A model repository holding the kit's exported bundle, and a real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="module")
def models(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    copy_bundle(bundle_path, root)
    return root


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[ServerProcess]:
    """Shared by a module's tests, which must not change its repository."""
    with running_server(models, batching__max_batch_size=8, batching__max_queue_delay_us=5000) as running:
        yield running


@pytest.fixture(scope="session")
def jpegs(tag_images: Path) -> list[bytes]:
    return [(tag_images / "train" / f"img_{i:03d}.jpg").read_bytes() for i in range(6)]
