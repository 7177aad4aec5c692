"""The serving tests' bundles, written by `serving.bundle`'s writer with tiny random networks
(`tests.serving.bundles`), never by the training kit; a repository holding the tags bundle, and a
real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import bundles
from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="session")
def bundle_path(tag_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/tags/1`: multi-label tags of the tag images; read-only: tests that alter it copy it first."""
    images = sorted((tag_images / "train").glob("*.jpg"))[:24]
    return bundles.write_tags(tmp_path_factory.mktemp("models"), images)


@pytest.fixture(scope="session")
def classify_bundle(tag_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/colours/1`: one colour per tag image; read-only."""
    images = sorted((tag_images / "train").glob("*.jpg"))[:24]
    return bundles.write_colours(tmp_path_factory.mktemp("classify-models"), images)


@pytest.fixture(scope="session")
def seg_bundle(seg_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/rects/1`: a U-Net over the rectangles' codes; read-only."""
    images = sorted((seg_images / "images").glob("*.png"))[:12]
    return bundles.write_rects(tmp_path_factory.mktemp("seg-models"), images)


@pytest.fixture(scope="session")
def pose_bundle(point_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/discs/1`: the discs' `centre` point; read-only."""
    images = sorted((point_images / "images").glob("*.png"))[:16]
    return bundles.write_discs(tmp_path_factory.mktemp("pose-models"), images)


@pytest.fixture(scope="session")
def sentiment_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/reviews/1`: neg/pos, at most 48 tokens (longer texts are cut); read-only."""
    return bundles.write_reviews(tmp_path_factory.mktemp("text-models"))


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
