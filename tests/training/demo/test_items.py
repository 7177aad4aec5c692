"""Single Fashion-MNIST items in class folders: the demo's offline pretraining set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES
from training.demo.items import build_item_folders
from training.errors import DataError

from .fakes import write_fake_fashion_mnist


def test_items_land_in_class_folders_from_their_own_split(tmp_path: Path) -> None:
    arrays = write_fake_fashion_mnist(tmp_path / "fm")
    out = build_item_folders(tmp_path / "items", n_train=30, n_valid=10, root=tmp_path / "fm")
    train, valid = sorted((out / "train").rglob("*.png")), sorted((out / "valid").rglob("*.png"))
    assert (len(train), len(valid)) == (30, 10)
    for path in train:
        index = int(path.stem)
        assert path.parent.name == CLASS_NAMES[arrays["train_labels"][index]]
        np.testing.assert_array_equal(np.asarray(Image.open(path)), arrays["train_images"][index])
    for path in valid:
        assert path.parent.name == CLASS_NAMES[arrays["test_labels"][int(path.stem)]]


def test_the_same_seed_picks_the_same_items(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm")
    a = build_item_folders(tmp_path / "a", n_train=12, n_valid=4, seed=3, root=tmp_path / "fm")
    b = build_item_folders(tmp_path / "b", n_train=12, n_valid=4, seed=3, root=tmp_path / "fm")
    names = [sorted(p.relative_to(folder) for p in folder.rglob("*.png")) for folder in (a, b)]
    assert names[0] == names[1]


def test_a_non_empty_target_is_refused(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm")
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        build_item_folders(tmp_path / "items", n_train=4, n_valid=2, root=tmp_path / "fm")
    assert (tmp_path / "items" / "keep.txt").read_text() == "mine"
