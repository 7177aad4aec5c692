"""Point targets: read from CSV columns, moved exactly with their images, never silently wrong."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from training.data import FileListSplitter, ItemList, PointsEncoder, PointsFromColumns
from training.data.block import LabelledData
from training.data.datasets import ImageDataset
from training.data.transforms import HorizontalFlip, VerticalFlip, sized
from training.errors import DataError, LabelError

SIZE = 64


def write_marker_points(root: Path, centres: list[tuple[float, float]]) -> Path:
    """Black images, each with a white 6×6 block whose centre (continuous pixels) is the label."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (x, y) in enumerate(centres):
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        pixels[int(y) - 3 : int(y) + 3, int(x) - 3 : int(x) + 3] = 255
        Image.fromarray(pixels).save(root / "images" / f"p{i}.png")
        rows.append({"image_name": f"p{i}", "centre_x": x, "centre_y": y})
    with (root / "points.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_name", "centre_x", "centre_y"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "valid.txt").write_text(f"p{len(centres) - 1}\n")
    return root


def labelled(root: Path) -> LabelledData:
    items = ItemList.from_csv(root, "points.csv", folder="images", suffix=".png")
    return items.split(FileListSplitter.from_file(root / "valid.txt")).label(PointsFromColumns(["centre"]))


def bright_centre(image: torch.Tensor) -> tuple[float, float]:
    """Where the white block went: the weighted centroid of its pixels, in continuous pixels."""
    weights = image[0].double()
    ys, xs = torch.meshgrid(torch.arange(image.shape[1]), torch.arange(image.shape[2]), indexing="ij")
    return float((weights * xs).sum() / weights.sum()) + 0.5, float((weights * ys).sum() / weights.sum()) + 0.5


def test_points_are_read_as_coordinates_in_minus_one_to_one(tmp_path: Path) -> None:
    data = labelled(write_marker_points(tmp_path, [(16.0, 8.0), (48.0, 32.0), (32.0, 56.0)]))
    assert data.classes == ["centre"]
    assert torch.allclose(data.y_train, torch.tensor([[-0.5, -0.75], [0.5, 0.0]]))
    assert data.encoder.decode(data.y_valid[0]) == [(0.0, 0.75)]


def test_bad_point_rows_are_named(tmp_path: Path) -> None:
    root = write_marker_points(tmp_path, [(16.0, 8.0), (48.0, 32.0), (32.0, 56.0)])
    text = (root / "points.csv").read_text()
    (root / "points.csv").write_text(text.replace("48.0,32.0", "70.0,32.0"))
    with pytest.raises(LabelError, match=r"points.csv line 3: point \[\[70\.0, 32\.0\]\] lies outside its 64×64 image"):
        labelled(root)
    (root / "points.csv").write_text(text.replace("48.0,32.0", "left,32.0"))
    with pytest.raises(LabelError, match=r"points.csv line 3: centre_x='left' is not a number"):
        labelled(root)
    with pytest.raises(DataError, match=r"no column 'nose_x'"):
        ItemList.from_csv(root, "points.csv", folder="images", suffix=".png").split(
            FileListSplitter.from_file(root / "valid.txt")
        ).label(PointsFromColumns(["nose"]))


@pytest.mark.parametrize(
    "transform",
    [
        HorizontalFlip(p=1.0),
        VerticalFlip(p=1.0),
        v2.RandomRotation((90, 90)),
        v2.RandomAffine(degrees=(23, 23)),
        v2.RandomAffine(degrees=0, scale=(1.3, 1.3)),
        v2.RandomAffine(degrees=0, translate=(0.2, 0.2)),
        v2.RandomPerspective(distortion_scale=0.3, p=1.0),
        v2.Resize((40, 40)),
    ],
    ids=["hflip", "vflip", "rot90", "rotate", "zoom", "shift", "warp", "resize"],
)
def test_geometric_transforms_move_points_exactly_where_the_content_went(
    tmp_path: Path, transform: v2.Transform
) -> None:
    data = labelled(write_marker_points(tmp_path, [(14.0, 20.0), (44.0, 12.0), (40.0, 46.0), (20.0, 50.0)]))
    torch.manual_seed(0)
    dataset = ImageDataset(data.train, data.y_train, v2.Compose([transform]), PointsEncoder(data.classes))
    for i in range(len(dataset)):
        image, target = dataset[i]
        height, width = image.shape[1:]
        point = ((target[0] + 1) / 2 * width, (target[1] + 1) / 2 * height)
        assert np.allclose(point, bright_centre(image), atol=0.5), (point, bright_centre(image))


def test_a_point_pushed_off_the_image_redraws_the_augmentation(tmp_path: Path) -> None:
    data = labelled(write_marker_points(tmp_path, [(6.0, 6.0), (58.0, 58.0), (32.0, 32.0)]))
    zoom = v2.RandomAffine(degrees=0, scale=(3.0, 3.0))  # takes a point 26 px from the centre 78 px out
    always_out = ImageDataset(data.train, data.y_train, v2.Compose([zoom]), PointsEncoder(data.classes), sized([], SIZE))
    for i in range(2):
        image, target = always_out[i]
        assert torch.equal(target, data.y_train[i])  # fell back to the plain resize: the true point
        assert np.allclose(((target + 1) / 2 * SIZE).tolist(), bright_centre(image), atol=0.5)
    sometimes = v2.Compose([v2.RandomApply([zoom], p=0.5)])
    torch.manual_seed(0)
    dataset = ImageDataset(data.train, data.y_train, sometimes, PointsEncoder(data.classes), sized([], SIZE))
    for _ in range(20):
        _, target = dataset[0]
        assert bool((target.abs() <= 1).all())


def test_the_encoder_refuses_a_moved_point_outside_the_image() -> None:
    encoder = PointsEncoder(["centre"])
    wrapped = encoder.wrap(torch.tensor([0.0, 0.5]), (20, 40))
    assert wrapped.tolist() == [[20.0, 15.0]]
    back = encoder.unwrap(wrapped, (20, 40))
    assert back is not None and back.tolist() == [0.0, 0.5]
    assert encoder.unwrap(wrapped + 30, (20, 40)) is None
