"""The pose demo set: real LFW faces placed on canvases, labelled with their centre in pixels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.demo.pose import build_pose_set, load_faces, place_face
from training.errors import ConfigError


@pytest.mark.parametrize("seed", range(5))
def test_the_labelled_centre_is_the_centre_of_the_painted_face(seed: int) -> None:
    faces, others = load_faces()
    placed = place_face(np.random.default_rng(seed), faces[seed], 96, distractor=others[seed])
    ys, xs = np.nonzero(placed.alpha > 0.5)
    weights = placed.alpha[ys, xs]
    centroid = (float(np.average(xs, weights=weights)) + 0.5, float(np.average(ys, weights=weights)) + 0.5)
    assert np.allclose(centroid, placed.centre, atol=1.0), (centroid, placed.centre)
    assert placed.alpha.max() == pytest.approx(1.0) and placed.image.shape == (96, 96, 3)


def test_the_set_holds_images_points_and_a_valid_split(tmp_path: Path) -> None:
    out = build_pose_set(tmp_path / "pose", n_train=8, n_valid=4, size=64)
    assert sorted(p.name for p in out.iterdir()) == ["images", "points.csv", "valid.txt"]
    with (out / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image_name"] for r in rows] == [f"train_{i:05d}" for i in range(8)] + [
        f"valid_{i:05d}" for i in range(4)
    ]
    for row in rows:
        x, y = float(row["centre_x"]), float(row["centre_y"])
        assert 0 < x < 64 and 0 < y < 64
        with Image.open(out / "images" / f"{row['image_name']}.jpg") as image:
            assert image.size == (64, 64)
    assert (out / "valid.txt").read_text().split() == [f"valid_{i:05d}" for i in range(4)]
    with pytest.raises(ConfigError, match="at least 48"):
        build_pose_set(tmp_path / "small", size=32)
