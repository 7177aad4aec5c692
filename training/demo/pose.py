"""A head-centre regression set from real faces: scikit-image's `lfw_subset` on textured canvases.

Like the BIWI head-pose lesson, each image is labelled with one point: the centre of the face, in
pixels (x to the right, y down). A face crop (25×25, from the LFW subset that ships inside
scikit-image's wheel, so nothing is downloaded) is scaled, rotated about its centre and placed at
random on a textured, coloured canvas; half the images also carry a non-face crop from the same
subset as a distractor. Train and valid use disjoint faces (the first 80 and the last 20).

    out/images/<name>.jpg   out/points.csv (image_name,centre_x,centre_y)   out/valid.txt
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.demo.folders import check_target, publish_folder, sibling
from training.demo.scenes import BACKGROUNDS, JPEG_QUALITY, TEXTURES, textured_canvas
from training.errors import ConfigError

__all__ = ["FacePlacement", "build_pose_set", "place_face"]

N_TRAIN_FACES = 80  # of the subset's 100 faces; the other 20 are the valid faces


@dataclass(frozen=True, eq=False)
class FacePlacement:
    image: np.ndarray
    """RGB canvas, (size, size, 3) uint8."""
    centre: tuple[float, float]
    """(x, y) of the face's centre in canvas pixels."""
    alpha: np.ndarray
    """Where the face was painted, (size, size) float32 in [0, 1]."""


def load_faces() -> tuple[np.ndarray, np.ndarray]:
    """(faces, non-faces), each (100, 25, 25) uint8, from scikit-image's bundled LFW subset."""
    from skimage.data import lfw_subset  # in the `train` extra; nothing is downloaded

    crops = np.rint(lfw_subset() * 255).astype(np.uint8)
    return crops[:100], crops[100:]


def place_face(
    rng: np.random.Generator, face: np.ndarray, size: int = 96, distractor: np.ndarray | None = None
) -> FacePlacement:
    """Paint `face` scaled to 30–45 % of the canvas, rotated ±25°, fully inside a random canvas."""
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    canvas = textured_canvas(rng, np.array(BACKGROUNDS[background], np.float32), texture, size)
    if distractor is not None:
        _paint(canvas, rng, distractor, size, angle=0.0)
    alpha, (x, y) = _paint(canvas, rng, face, size, angle=float(rng.uniform(-25, 25)))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return FacePlacement(image, (x, y), alpha)


def _paint(
    canvas: np.ndarray, rng: np.random.Generator, crop: np.ndarray, size: int, angle: float
) -> tuple[np.ndarray, tuple[float, float]]:
    side = int(rng.integers(int(0.30 * size), int(0.45 * size) + 1))
    scaled = Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC)
    rotated = scaled.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    cover = Image.new("L", (side, side), 255).rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    width, height = rotated.size  # the rotated square's bounding box, centred on the face's centre
    left = int(rng.integers(0, size - width + 1))
    top = int(rng.integers(0, size - height + 1))
    alpha = np.zeros((size, size), np.float32)
    alpha[top : top + height, left : left + width] = np.asarray(cover, np.float32) / 255
    pixels = np.zeros((size, size), np.float32)
    pixels[top : top + height, left : left + width] = np.asarray(rotated, np.float32)
    canvas *= 1 - alpha[..., None]
    canvas += (alpha * pixels)[..., None]
    return alpha, (left + width / 2, top + height / 2)


def build_pose_set(
    out: Path,
    n_train: int = 1500,
    n_valid: int = 300,
    size: int = 96,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the set under `out` atomically; the same arguments give the same bytes."""
    if n_train < 1 or n_valid < 0:
        raise ConfigError(f"need n_train >= 1 and n_valid >= 0, got n_train={n_train}, n_valid={n_valid}")
    if size < 48:
        raise ConfigError(f"size must be at least 48 px, got {size}")
    out = Path(out)
    check_target(out, overwrite)
    faces, others = load_faces()
    pools = {"train": faces[:N_TRAIN_FACES], "valid": faces[N_TRAIN_FACES:]}
    rngs = dict(zip(pools, np.random.default_rng(seed).spawn(2), strict=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out, "tmp")
    try:
        (tmp / "images").mkdir()
        rows: list[tuple[str, str, str]] = []
        for split, count in (("train", n_train), ("valid", n_valid)):
            rng, pool = rngs[split], pools[split]
            for i in range(count):
                face = pool[int(rng.integers(len(pool)))]
                distractor = others[int(rng.integers(len(others)))] if rng.random() < 0.5 else None
                placed = place_face(rng, face, size, distractor)
                name = f"{split}_{i:05d}"
                Image.fromarray(placed.image).save(tmp / "images" / f"{name}.jpg", quality=JPEG_QUALITY)
                rows.append((name, f"{placed.centre[0]:.2f}", f"{placed.centre[1]:.2f}"))
        with (tmp / "points.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("image_name", "centre_x", "centre_y"))
            writer.writerows(rows)
        valid = [name for name, _, _ in rows if name.startswith("valid_")]
        (tmp / "valid.txt").write_text("".join(f"{name}\n" for name in valid), encoding="utf-8")
        publish_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
