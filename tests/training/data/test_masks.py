"""Segmentation masks in the data block: read and checked once, moved exactly with their images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from training.data import FileListSplitter, ItemList, MaskFromFunction, read_codes
from training.data.block import LabelledData
from training.data.datasets import ImageDataset
from training.data.masks import MaskEncoder
from training.errors import DataError, LabelError

SIZE = 64


def write_marker_set(root: Path, n: int = 4) -> Path:
    """Black images with one white 12×12 marker; its mask marks the same pixels with code 1."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        top, left = 6 + 3 * i, 10 + 5 * i  # off-centre, so flips and turns really move it
        pixels[top : top + 12, left : left + 12] = 255
        mask[top : top + 12, left : left + 12] = 1
        Image.fromarray(pixels).save(root / "images" / f"m{i}.png")
        Image.fromarray(mask).save(root / "labels" / f"m{i}_P.png")
    (root / "codes.txt").write_text("Background\nMarker\nVoid\n")
    (root / "valid.txt").write_text("m3.png\n")
    return root


def mask_of(image: Path) -> Path:
    return image.parent.parent / "labels" / f"{image.stem}_P.png"


def labelled(root: Path) -> LabelledData:
    return (
        ItemList.from_folder(root / "images")
        .split(FileListSplitter.from_file(root / "valid.txt"))
        .label(MaskFromFunction(mask_of, read_codes(root / "codes.txt")))
    )


def test_masks_are_read_once_as_codes(tmp_path: Path) -> None:
    data = labelled(write_marker_set(tmp_path))
    assert data.classes == ["Background", "Marker", "Void"]
    assert data.y_train.shape == (3, SIZE, SIZE) and data.y_train.dtype == torch.uint8
    assert int(data.y_train.sum()) == 3 * 144


@pytest.mark.parametrize(
    "transform",
    [
        v2.RandomHorizontalFlip(p=1.0),
        v2.RandomVerticalFlip(p=1.0),
        v2.RandomRotation((90, 90)),
        v2.RandomAffine(degrees=(23, 23), scale=(1.3, 1.3)),
        v2.RandomAffine(degrees=0, translate=(0.2, 0.2)),
    ],
    ids=["hflip", "vflip", "rot90", "rotate+zoom", "shift"],
)
def test_geometric_transforms_move_the_mask_exactly_where_the_image_content_went(
    tmp_path: Path, transform: v2.Transform
) -> None:
    data = labelled(write_marker_set(tmp_path))
    torch.manual_seed(0)
    dataset = ImageDataset(data.train, data.y_train, v2.Compose([transform]), MaskEncoder(data.classes))
    for i in range(len(dataset)):
        image, mask = dataset[i]
        bright, marked = image[0] > 127, mask == 1
        assert marked.any() and set(torch.unique(mask).tolist()) <= {0, 1}  # nearest: no blended codes
        overlap = (bright & marked).sum() / (bright | marked).sum()
        assert overlap >= (1.0 if transform.__class__.__name__ != "RandomAffine" else 0.85), float(overlap)


def test_lighting_never_touches_a_mask(tmp_path: Path) -> None:
    data = labelled(write_marker_set(tmp_path))
    jitter = v2.ColorJitter(brightness=0.8, contrast=0.8)
    dataset = ImageDataset(data.train, data.y_train, v2.Compose([jitter]), MaskEncoder(data.classes))
    _, mask = dataset[0]
    assert torch.equal(mask, data.y_train[0])


def test_bad_masks_are_named(tmp_path: Path) -> None:
    root = write_marker_set(tmp_path)
    Image.fromarray(np.full((SIZE, SIZE), 7, np.uint8)).save(root / "labels" / "m1_P.png")
    with pytest.raises(LabelError, match=r"m1_P\.png holds code 7, but there are only 3 codes"):
        labelled(root)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(root / "labels" / "m1_P.png")
    with pytest.raises(LabelError, match="a mask has one channel"):
        labelled(root)
    (root / "labels" / "m1_P.png").unlink()
    with pytest.raises(LabelError, match=r"m1_P\.png does not exist"):
        labelled(root)
    with pytest.raises(DataError, match="does not exist"):
        read_codes(root / "nope.txt")


def test_a_mask_of_another_size_than_its_image_is_an_error(tmp_path: Path) -> None:
    root = write_marker_set(tmp_path)
    for i in range(4):
        Image.fromarray(np.zeros((SIZE // 2, SIZE // 2), np.uint8)).save(root / "labels" / f"m{i}_P.png")
    data = labelled(root)
    dataset = ImageDataset(data.train, data.y_train, v2.Compose([v2.Identity()]), MaskEncoder(data.classes))
    with pytest.raises(DataError, match=r"image is \(64, 64\) but its mask is \(32, 32\)"):
        dataset[0]


def test_the_data_block_sends_masks_through_its_transforms_and_resize(tmp_path: Path) -> None:
    data = labelled(write_marker_set(tmp_path)).transform(([v2.RandomHorizontalFlip(p=1.0)], []), size=32)
    train, valid, _ = data.datasets()
    for dataset in (train, valid):
        image, mask = dataset[0]
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
        bright, marked = image[0] > 127, mask == 1
        assert (bright & marked).sum() / (bright | marked).sum() >= 0.7  # halving blurs the image edge
    image, mask = train[0]
    assert mask[:, 16:].sum() > mask[:, :16].sum()  # the marker sat left of centre: flipped, it is right
