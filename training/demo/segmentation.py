"""A CamVid-style segmentation set from real Fashion-MNIST items: images, class masks, codes.txt.

Each image is a multi-label demo scene (`compose_scene`); its mask gives every pixel a code:
`Background`, one of the 10 item classes, or `Void` for the faint, anti-aliased rim of an item,
where the pixel's class is genuinely ambiguous. Items are painted in order, so a later item's
solid pixels win over an earlier one and its rim over anything beneath. Training and loss ignore
`Void` (CamVid's convention). Valid scenes use Fashion-MNIST's test split only.

    out/images/<name>.jpg   out/labels/<name>_P.png   out/codes.txt   out/valid.txt

The mask of `images/x.jpg` is found by a function of its path, `mask_path`, as in the CamVid lesson.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES, FASHION_MNIST_DIR, load_fashion_mnist
from training.demo.folders import check_target, publish_folder, sibling
from training.demo.scenes import JPEG_QUALITY, MAX_ITEMS, compose_scene
from training.errors import ConfigError, DataError

__all__ = [
    "CODES",
    "SOLID",
    "VOID",
    "SegmentationSetSummary",
    "build_segmentation_scenes",
    "mask_of",
    "mask_path",
]

CODES: tuple[str, ...] = ("Background", *CLASS_NAMES, "Void")
"""Pixel codes in order: a mask pixel's value is its index here."""
VOID = CODES.index("Void")
SOLID = 0.5
"""An item pixel with alpha ≥ SOLID is the item's; one between FAINT and SOLID is Void."""
FAINT = 0.1


@dataclass(frozen=True)
class SegmentationSetSummary:
    out: Path
    n_train: int
    n_valid: int
    size: int
    pixel_counts: dict[str, int]
    """Code -> number of pixels carrying it over all masks (train and valid), zeros included."""


def mask_of(alphas: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """The (size, size) uint8 code mask of a scene whose item i has class `classes[i]`."""
    mask = np.zeros(alphas.shape[1:], dtype=np.uint8)
    for alpha, cls in zip(alphas, classes, strict=True):
        mask[(alpha > FAINT) & (alpha < SOLID)] = VOID
        mask[alpha >= SOLID] = 1 + int(cls)
    return mask


def mask_path(image: Path) -> Path:
    """`images/x.jpg` → `labels/x_P.png`: the labelling function (`get_y_fn`) of this layout."""
    return image.parent.parent / "labels" / f"{image.stem}_P.png"


def build_segmentation_scenes(
    out: Path,
    n_train: int = 2000,
    n_valid: int = 400,
    size: int = 96,
    seed: int = 0,
    root: Path = FASHION_MNIST_DIR,
    *,
    overwrite: bool = False,
) -> SegmentationSetSummary:
    """Write the set under `out` atomically; the same arguments give the same bytes."""
    if n_train < 1 or n_valid < 0:
        raise ConfigError(f"need n_train >= 1 and n_valid >= 0, got n_train={n_train}, n_valid={n_valid}")
    if size % 32:
        raise ConfigError(f"size must be a multiple of 32 (a U-Net halves it 5 times), got {size}")
    out = Path(out)
    check_target(out, overwrite)
    splits = {"train": load_fashion_mnist("train", root), "valid": load_fashion_mnist("test", root)}
    rngs = dict(zip(splits, np.random.default_rng(seed).spawn(2), strict=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out, "tmp")
    counts = np.zeros(len(CODES), dtype=np.int64)
    try:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        names: dict[str, list[str]] = {"train": [], "valid": []}
        for split, count in (("train", n_train), ("valid", n_valid)):
            images, labels = splits[split]
            if count and len(images) == 0:
                raise DataError(f"cannot build {split} scenes: the Fashion-MNIST split has no images")
            rng = rngs[split]
            for i in range(count):
                picks = rng.choice(
                    len(images), size=min(int(rng.integers(1, MAX_ITEMS + 1)), len(images)), replace=False
                )
                scene = compose_scene(rng, [images[j] for j in picks], size)
                mask = mask_of(scene.alphas, labels[picks].tolist())
                counts += np.bincount(mask.ravel(), minlength=len(CODES))
                name = f"{split}_{i:05d}"
                Image.fromarray(scene.image).save(tmp / "images" / f"{name}.jpg", quality=JPEG_QUALITY)
                Image.fromarray(mask).save(tmp / "labels" / f"{name}_P.png")
                names[split].append(name)
        (tmp / "codes.txt").write_text("".join(f"{code}\n" for code in CODES), encoding="utf-8")
        (tmp / "valid.txt").write_text("".join(f"{name}.jpg\n" for name in names["valid"]), encoding="utf-8")
        publish_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SegmentationSetSummary(out, n_train, n_valid, size, dict(zip(CODES, counts.tolist(), strict=True)))
