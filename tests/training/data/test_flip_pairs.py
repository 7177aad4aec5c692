"""Left/right point pairs: a flip swaps their names, and sided names without a pair refuse flips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import FileListSplitter, ItemList, PointsEncoder, PointsFromColumns
from training.data.datasets import ImageDataset
from training.data.flip_pairs import flip_pair_indices, mirrored_name, refuse_unpaired_sides
from training.data.transforms import HorizontalFlip
from training.errors import ConfigError
from training.tasks import task_for
from training.tasks.pose import PoseConfig

SIZE = 64
EYES = ["eye_left", "eye_right"]


def write_faces(root: Path, n: int = 4) -> Path:
    """Black images with markers on the subject's left eye (the image's right) and right eye,
    labelled in `points.csv` as eye_left_x, eye_left_y, eye_right_x, ..."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        left, right, y = (44 + i, 20 - i, 24 + i)
        pixels[y - 3 : y + 3, left - 3 : left + 3] = 255
        pixels[y - 3 : y + 3, right - 3 : right + 3] = 255
        Image.fromarray(pixels).save(root / "images" / f"f{i}.png")
        rows.append(
            {
                "image_name": f"f{i}",
                "eye_left_x": left,
                "eye_left_y": y,
                "eye_right_x": right,
                "eye_right_y": y,
            }
        )
    with (root / "points.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def brightness_at(image: torch.Tensor, x: float, y: float) -> int:
    return int(image[0, int(y), int(x)])


@pytest.mark.parametrize("pairs, left_stays_left", [(((0, 1),), True), ((), False)])
def test_after_a_flip_the_point_named_left_is_still_the_left_one(
    tmp_path: Path, pairs: tuple[tuple[int, int], ...], left_stays_left: bool
) -> None:
    root = write_faces(tmp_path)
    items = ItemList.from_csv(root, "points.csv", folder="images", suffix=".png")
    data = items.split(FileListSplitter(frozenset({"f3"}))).label(PointsFromColumns(EYES))
    dataset = ImageDataset(data.train, data.y_train, HorizontalFlip(1.0, pairs), PointsEncoder(EYES))
    for i in range(len(dataset)):
        image, target = dataset[i]
        (lx, ly), (rx, ry) = ((target.reshape(2, 2) + 1) / 2 * SIZE).tolist()
        assert brightness_at(image, lx, ly) > 0 and brightness_at(image, rx, ry) > 0  # on the markers
        # the subject's left eye shows on the image's right, in a mirrored face too
        assert (lx > rx) is left_stays_left


def test_sided_names_are_mirrored_in_every_common_spelling() -> None:
    assert mirrored_name("eye_left") == "eye_right"
    assert mirrored_name("left_eye") == "right_eye"
    assert mirrored_name("LeftEye") == "RightEye"
    assert mirrored_name("l_shoulder") == "r_shoulder"
    assert mirrored_name("EYE_RIGHT") == "EYE_LEFT"
    assert mirrored_name("wrist.l") == "wrist.r"
    assert mirrored_name("nose") is None
    assert mirrored_name("leftover") is None


def test_pairs_name_points_once_each() -> None:
    points = ["nose", *EYES]
    assert flip_pair_indices(["eye_left:eye_right"], points) == ((1, 2),)
    with pytest.raises(ConfigError, match="'ear' is not a point"):
        flip_pair_indices(["eye_left:ear"], points)
    with pytest.raises(ConfigError, match="left:right"):
        flip_pair_indices(["eye_left"], points)
    with pytest.raises(ConfigError, match="already in another pair"):
        flip_pair_indices(["eye_left:eye_right", "nose:eye_left"], points)


def test_sided_points_without_a_pair_refuse_flips_and_say_how_to_declare_them() -> None:
    with pytest.raises(ConfigError, match="--flip-pairs eye_left:eye_right") as err:
        refuse_unpaired_sides(["nose", *EYES], ())
    assert "--no-flip" in str(err.value)
    with pytest.raises(ConfigError, match="has no 'hand_right'"):
        refuse_unpaired_sides(["hand_left"], ())
    refuse_unpaired_sides(["nose", *EYES], ((1, 2),))
    refuse_unpaired_sides(["nose", "chin"], ())


def test_a_pose_run_checks_its_pairs_before_training(tmp_path: Path) -> None:
    root = write_faces(tmp_path)
    task = task_for("pose")
    base = {"data": root, "points": EYES, "valid_pct": 0.25, "suffix": ".png", "out": tmp_path / "run"}
    with pytest.raises(ConfigError, match="look like a left/right pair"):
        task.setup(PoseConfig(**base))
    assert task.setup(PoseConfig(**base, flip_pairs=["eye_left:eye_right"])).flip_pairs == ((0, 1),)
    assert task.setup(PoseConfig(**base, do_flip=False)).flip_pairs == ()
