"""A tiny Fashion-MNIST look-alike in the real IDX format, so tests never need the Debian package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.demo.fashion_mnist import write_idx


def write_fake_fashion_mnist(
    root: Path,
    n_train: int = 40,
    n_test: int = 20,
    train_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Random 28×28 items into `root` (labels cycle 0..9 unless given); returns what was written."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, stem, n, labels in (
        ("train", "train", n_train, train_labels),
        ("test", "t10k", n_test, test_labels),
    ):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.asarray(np.arange(n) % 10 if labels is None else labels, dtype=np.uint8)
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", labels)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays
