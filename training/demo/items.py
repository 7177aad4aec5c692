"""Fashion-MNIST items as an ImageNet-style folder set: `train/<class>/*.png`, `valid/<class>/*.png`.

Single-label classification on these real items is the demo's pretraining step: a body that has
learnt garment shapes here transfers to the multi-label scenes (validation items come from the
test split, which the scenes' validation set also draws from, so nothing leaks into training).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES, FASHION_MNIST_DIR, load_fashion_mnist
from training.errors import DataError

__all__ = ["build_item_folders"]


def build_item_folders(
    out: Path, n_train: int = 20000, n_valid: int = 2000, seed: int = 0, root: Path = FASHION_MNIST_DIR
) -> Path:
    """Write a seeded sample of the train split to `out/train`, of the test split to `out/valid`."""
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already exists and is not empty; remove it or choose another --out")
    rng = np.random.default_rng(seed)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex}"
    try:
        for split, source, n in (("train", "train", n_train), ("valid", "test", n_valid)):
            images, labels = load_fashion_mnist(source, root)  # type: ignore[arg-type]
            for i in rng.choice(len(images), size=min(n, len(images)), replace=False):
                folder = staging / split / CLASS_NAMES[labels[i]]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
