"""The chain's middle: `LabelledData` holds labels once and makes datasets for any size or transforms."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from training.data import ImageDataset, ItemList, LabelledData, get_transforms
from training.data.transforms import Squish
from training.errors import DataError

from .helpers import tag_source


@pytest.fixture(scope="module")
def src(tag_images: Path) -> LabelledData:
    return tag_source(tag_images)


def test_labelled_data_starts_without_transforms_at_224_pixels(src: LabelledData) -> None:
    assert src.tfms == ([], []) and src.size == 224 and src.test is None
    assert src.classes == ["blue", "green", "red", "square"] == src.encoder.classes


def test_transform_replaces_only_what_it_is_given(src: LabelledData) -> None:
    tfms = get_transforms()
    augmented = src.transform(tfms)
    assert augmented.tfms is tfms and augmented.size == 224
    resized = augmented.transform(size=40)
    assert resized.tfms is tfms and resized.size == 40
    assert src.tfms == ([], []) and src.size == 224  # copies; the original is unchanged


@pytest.mark.parametrize("size", [7, 0, -32])
def test_transform_refuses_sizes_below_eight_pixels(src: LabelledData, size: int) -> None:
    with pytest.raises(DataError, match=rf"^size must be at least 8 pixels, got {size}$"):
        src.transform(size=size)


def test_labelled_data_is_immutable(src: LabelledData) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.size = 64  # type: ignore[misc]


def test_datasets_give_sized_uint8_images_with_their_targets(src: LabelledData) -> None:
    train, valid, test = src.transform(get_transforms(), size=20).datasets()
    assert (len(train), len(valid), test) == (72, 24, None)
    image, target = train[1]
    assert type(image) is torch.Tensor  # not a tv_tensors.Image: collation and models see plain tensors
    assert image.shape == (3, 20, 20) and image.dtype == torch.uint8
    assert torch.equal(target, src.y_train[1])
    assert torch.equal(valid[23][1], src.y_valid[23])


def test_training_transforms_apply_to_training_only(src: LabelledData) -> None:
    train, valid, _ = src.transform((get_transforms()[0], []), size=16).datasets()
    assert [type(t) for t in train.tfm.transforms[1:]] == [type(t) for t in get_transforms()[0]]
    assert [type(t) for t in valid.tfm.transforms] == [Squish]


def test_add_test_gives_a_test_dataset_with_validation_transforms_and_empty_targets(
    src: LabelledData, tag_images: Path
) -> None:
    paths = [tag_images / "train" / "img_003.jpg", tag_images / "train" / "img_001.jpg"]
    with_test = src.transform(get_transforms(), size=16).add_test(paths)
    assert with_test.test is not None and with_test.test.items == paths
    assert src.test is None
    _, valid, test = with_test.datasets()
    assert isinstance(test, ImageDataset)
    assert [type(t) for t in test.tfm.transforms] == [type(t) for t in valid.tfm.transforms]
    image, target = test[0]
    assert image.shape == (3, 16, 16) and target.numel() == 0


def test_add_test_keeps_a_given_item_list_as_is(src: LabelledData) -> None:
    items = ItemList.from_list(["some text"])
    assert src.add_test(items).test is items
