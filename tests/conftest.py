"""Small, real, learnable image sets written to disk: colour tags plus an optional white square."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def write_tag_images(root: Path, n: int = 96, n_valid: int = 24, size: int = 32, seed: int = 0) -> Path:
    """`root/train/*.jpg`, `root/labels.csv` (image_name,tags) and `root/valid.txt`, like the demo set."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % len(names)]
        pixels = np.empty((size, size, 3), dtype=np.uint8)
        pixels[:] = COLOURS[colour]
        pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        tags = [colour]
        if i % 2:
            x, y = rng.integers(2, size // 2, 2)
            pixels[y : y + size // 3, x : x + size // 3] = 255
            tags.append("square")
        name = f"img_{i:03d}"
        Image.fromarray(pixels).save(root / "train" / f"{name}.jpg", quality=95)
        rows.append({"image_name": name, "tags": " ".join(tags)})
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_name", "tags"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "valid.txt").write_text("\n".join(r["image_name"] for r in rows[-n_valid:]) + "\n")
    return root


@pytest.fixture(scope="session")
def tag_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only shared set; tests that modify data make their own with `write_tag_images`."""
    return write_tag_images(tmp_path_factory.mktemp("tags"))


@pytest.fixture(scope="session")
def trained_run(tag_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a finished `stage-1` (resnet18, 32 px, 2 epochs) on the tag images."""
    from training.config import TrainConfig
    from training.run import run_training

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        data=tag_images, arch="resnet18", size=32, bs=16, epochs=2, lr=1e-3, num_workers=0, out=out
    )
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def bundle_path(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/tags/1` exported from `trained_run`; read-only: tests that alter it copy it first."""
    from training.export import export_stage

    return export_stage(trained_run, "stage-1", "tags", tmp_path_factory.mktemp("models"), parity_items=24)
