"""Compose Fashion-MNIST items onto coloured, textured backgrounds: a Planet-style multi-label set.

Planet's "Understanding the Amazon from Space" labels each image with a few of 17 tags, some about
objects (roads, mines) and some about the whole scene (haze, clear). The demo set mirrors that: an
image carries the class tags of the 1-4 clothing items drawn on it plus one background-colour tag
and one texture tag, 17 tags in all. The files are laid out like Planet's (one image folder,
`labels.csv` with `image_name,tags`) so the multi-label pipeline runs unchanged on either.

`compose_scene` is the core: it knows nothing of files or class names and keeps each item's alpha
map on the canvas, so a segmentation builder can later derive a per-pixel class mask from it.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES, FASHION_MNIST_DIR, load_fashion_mnist
from training.demo.folders import check_target, publish_folder, sibling
from training.errors import ConfigError, DataError

__all__ = [
    "ALL_TAGS",
    "BACKGROUNDS",
    "JPEG_QUALITY",
    "MAX_ITEMS",
    "TEXTURES",
    "Scene",
    "SceneSetSummary",
    "build_multilabel_scenes",
    "compose_scene",
    "item_sides",
    "paint_item",
    "random_background",
    "textured_canvas",
    "to_uint8",
]

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "bg_red": (175, 45, 40),
    "bg_green": (45, 135, 60),
    "bg_blue": (40, 70, 170),
    "bg_sand": (215, 190, 135),
}
"""Background tag -> base RGB colour; each scene jitters it a little so colour is a range, not a value."""

TEXTURES: tuple[str, ...] = ("plain", "striped", "noisy")
"""Texture tags: strong enough to survive JPEG and a 96 px canvas, so a CNN can learn them."""

ALL_TAGS: tuple[str, ...] = (*CLASS_NAMES, *BACKGROUNDS, *TEXTURES)
"""The 17 tags a scene image can carry, in a fixed order (classes, then backgrounds, then textures)."""

MAX_ITEMS = 4
"""Items per scene are drawn from 1..MAX_ITEMS, one per cell of a 2x2 grid so they overlap little."""

JPEG_QUALITY = 90

_MIN_SIZE = 32
_COLOUR_JITTER = 15
_STRIPE_AMPLITUDE = 45.0
_NOISE_STD = 28.0
_MIN_TINT_DISTANCE = 160.0
# Fashion-MNIST stores dark garments as dim pixels; alpha = (intensity / 255) ** 0.6 lifts them so
# every item is visible (the darkest 5% would otherwise be barely 25% opaque) and keeps its detail.
_ALPHA_GAMMA = 0.6
_TINT_CANDIDATES = 32


@dataclass(frozen=True, eq=False)
class Scene:
    """One composed image and what is needed to label it, for classification or segmentation.

    `alphas[i]` is item i's opacity on the canvas (0..1, zero outside the item). Items are drawn in
    index order, so where two alpha maps overlap the later item is on top.
    """

    image: np.ndarray
    """RGB canvas, (size, size, 3) uint8."""
    alphas: np.ndarray
    """Per-item alpha maps, (n_items, size, size) float32 in [0, 1]."""
    tints: tuple[tuple[int, int, int], ...]
    """The RGB colour each item was painted in, chosen to contrast with the background."""
    background: str
    """One of BACKGROUNDS."""
    texture: str
    """One of TEXTURES."""

    @property
    def scene_tags(self) -> tuple[str, str]:
        """The tags that describe the whole image rather than an item."""
        return (self.background, self.texture)


@dataclass(frozen=True)
class SceneSetSummary:
    """What `build_multilabel_scenes` wrote, so a caller can check coverage without reading files."""

    out: Path
    n_train: int
    n_valid: int
    size: int
    seed: int
    train_tag_counts: dict[str, int]
    """Tag -> number of training images carrying it, for every tag in ALL_TAGS (zeros included)."""
    valid_tag_counts: dict[str, int]
    """Tag -> number of validation images carrying it, for every tag in ALL_TAGS (zeros included)."""


def compose_scene(rng: np.random.Generator, items: Sequence[np.ndarray], size: int = 96) -> Scene:
    """Paint 1..MAX_ITEMS grayscale items onto a random background; all randomness comes from `rng`.

    Each item is scaled up to at most ~46% of the canvas, placed with jitter in its own cell of a
    2x2 grid, and alpha-blended in a tint that contrasts with the background, with alpha =
    (intensity / 255) ** 0.6 so that dim (dark) garments still show. The items are not modified.
    """
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ValueError(f"a scene holds 1..{MAX_ITEMS} items, got {len(items)}")
    if size < _MIN_SIZE:
        raise ValueError(f"canvas size must be at least {_MIN_SIZE} px, got {size}")
    for i, item in enumerate(items):
        if item.ndim != 2 or item.dtype != np.uint8:
            raise ValueError(f"item {i} must be a 2-D uint8 array, got shape {item.shape} dtype {item.dtype}")

    background, texture, base, canvas = random_background(rng, size)

    half = size // 2
    smallest, largest = item_sides(half)
    # Jitter lets an item spill a few pixels past its cell, so positions are not a fixed grid.
    spill = max(2, half // 8)
    cells = rng.permutation(4)[: len(items)]
    alphas = np.zeros((len(items), size, size), dtype=np.float32)
    tints: list[tuple[int, int, int]] = []
    for i, (item, cell) in enumerate(zip(items, cells, strict=True)):
        side = int(rng.integers(smallest, largest + 1))
        row, col = divmod(int(cell), 2)
        top = int(np.clip(row * half + rng.integers(-spill, half - side + spill + 1), 0, size - side))
        left = int(np.clip(col * half + rng.integers(-spill, half - side + spill + 1), 0, size - side))
        alpha, tint = paint_item(rng, canvas, base, item, side, top, left)
        alphas[i, top : top + side, left : left + side] = alpha
        tints.append(tint)

    return Scene(
        image=to_uint8(canvas), alphas=alphas, tints=tuple(tints), background=background, texture=texture
    )


def item_sides(cell: int) -> tuple[int, int]:
    """The smallest and largest side of an item drawn in a `cell`-pixel cell, in pixels: at most 92 %
    of the cell, and at least Fashion-MNIST's own 28 px where the cell leaves room for it."""
    largest = int(cell * 0.92)
    return min(28, largest), largest


def random_background(rng: np.random.Generator, size: int) -> tuple[str, str, np.ndarray, np.ndarray]:
    """A random background and texture tag, the background's base RGB colour and a (size, size, 3)
    float32 canvas painted with them."""
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    base = np.array(BACKGROUNDS[background], dtype=np.float32)
    return background, texture, base, textured_canvas(rng, base, texture, size)


def paint_item(
    rng: np.random.Generator,
    canvas: np.ndarray,
    base: np.ndarray,
    item: np.ndarray,
    side: int,
    top: int,
    left: int,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Alpha-blend `item`, scaled to `side` x `side`, into `canvas` at (`top`, `left`) in a random tint
    that contrasts with `base`; return its alpha map (side, side) and the tint. The item is not modified.

    alpha = (intensity / 255) ** 0.6, so that dim (dark) garments still show.
    """
    resized = Image.fromarray(item).resize((side, side), Image.Resampling.BILINEAR)
    alpha = (np.asarray(resized, dtype=np.float32) / 255.0) ** _ALPHA_GAMMA
    tint = _contrasting_tint(rng, base)
    patch = canvas[top : top + side, left : left + side]
    a = alpha[..., None]
    patch *= 1.0 - a
    patch += a * np.array(tint, dtype=np.float32)
    return alpha, tint


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    """A float canvas as the uint8 RGB image it is saved as."""
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def build_multilabel_scenes(
    out: Path,
    n_train: int = 4000,
    n_valid: int = 1000,
    size: int = 96,
    seed: int = 0,
    root: Path = FASHION_MNIST_DIR,
    *,
    overwrite: bool = False,
) -> SceneSetSummary:
    """Write a Planet-style multi-label set: `out/train/*.jpg`, `out/labels.csv`, `out/valid.txt`.

    Train scenes draw items only from Fashion-MNIST's train split and valid scenes only from its test
    split, so no item appears on both sides. The same arguments give the same bytes. The set is
    built in a temporary sibling folder and renamed into place, so `out` is never half-written; an
    existing non-empty `out` is an error unless `overwrite` is set.
    """
    if n_train < 1 or n_valid < 0:
        raise ConfigError(f"need n_train >= 1 and n_valid >= 0, got n_train={n_train}, n_valid={n_valid}")
    if size < _MIN_SIZE:
        raise ConfigError(f"scene size must be at least {_MIN_SIZE} px, got {size}")
    out = Path(out)
    check_target(out, overwrite)

    train_images, train_labels = load_fashion_mnist("train", root)
    test_images, test_labels = load_fashion_mnist("test", root)
    # Separate streams: changing n_train leaves the validation scenes unchanged.
    train_rng, valid_rng = np.random.default_rng(seed).spawn(2)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out, "tmp")
    try:
        (tmp / "train").mkdir()
        rows: list[tuple[str, str]] = []
        train_counts = _write_split(tmp, "train", n_train, train_images, train_labels, train_rng, size, rows)
        valid_counts = _write_split(tmp, "valid", n_valid, test_images, test_labels, valid_rng, size, rows)
        with (tmp / "labels.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("image_name", "tags"))
            writer.writerows(rows)
        valid_names = [name for name, _ in rows if name.startswith("valid_")]
        (tmp / "valid.txt").write_text("".join(f"{name}\n" for name in valid_names), encoding="utf-8")
        publish_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return SceneSetSummary(
        out=out,
        n_train=n_train,
        n_valid=n_valid,
        size=size,
        seed=seed,
        train_tag_counts=train_counts,
        valid_tag_counts=valid_counts,
    )


def _write_split(
    folder: Path,
    prefix: str,
    count: int,
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    size: int,
    rows: list[tuple[str, str]],
) -> dict[str, int]:
    """Compose `count` scenes from one Fashion-MNIST split, save them, append their label rows."""
    if count and len(images) == 0:
        raise DataError(f"cannot build {prefix} scenes: the Fashion-MNIST split has no images")
    counts: Counter[str] = Counter()
    for i in range(count):
        n_items = min(int(rng.integers(1, MAX_ITEMS + 1)), len(images))
        picks = rng.choice(len(images), size=n_items, replace=False)
        scene = compose_scene(rng, [images[j] for j in picks], size)
        present = set(labels[picks].tolist())
        tags = [name for k, name in enumerate(CLASS_NAMES) if k in present]
        tags += scene.scene_tags
        counts.update(tags)
        name = f"{prefix}_{i:05d}"
        Image.fromarray(scene.image).save(
            folder / "train" / f"{name}.jpg", format="JPEG", quality=JPEG_QUALITY
        )
        rows.append((name, " ".join(tags)))
    return {tag: counts[tag] for tag in ALL_TAGS}


def textured_canvas(rng: np.random.Generator, base: np.ndarray, texture: str, size: int) -> np.ndarray:
    """A (size, size, 3) float32 canvas of the jittered base colour with the texture applied."""
    colour = base + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
    canvas = np.broadcast_to(colour.astype(np.float32), (size, size, 3)).copy()
    if texture == "striped":
        period = float(rng.uniform(7.0, 12.0))
        phase = float(rng.uniform(0.0, 2 * np.pi))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        coordinate = (yy, xx, yy + xx, yy - xx)[int(rng.integers(4))]
        # Square-ish wave: sharp light/dark bands read as stripes even after JPEG.
        wave = np.tanh(3.0 * np.sin(2 * np.pi * coordinate / period + phase))
        canvas += (_STRIPE_AMPLITUDE * wave)[..., None]
    elif texture == "noisy":
        canvas += rng.normal(0.0, _NOISE_STD, size=(size, size, 1)).astype(np.float32)
    return canvas


def _contrasting_tint(rng: np.random.Generator, base: np.ndarray) -> tuple[int, int, int]:
    """A random RGB colour far from the background, so items stand out whatever the background.

    Always draws the same number of candidates, so the rest of the stream does not depend on luck.
    """
    candidates = rng.integers(0, 256, size=(_TINT_CANDIDATES, 3))
    distance = np.linalg.norm(candidates - base, axis=1)
    far = np.flatnonzero(distance >= _MIN_TINT_DISTANCE)
    chosen = candidates[far[0]] if far.size else candidates[int(np.argmax(distance))]
    r, g, b = (int(v) for v in chosen)
    return (r, g, b)
