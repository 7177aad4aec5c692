"""Single Fashion-MNIST items in class folders: the demo's offline pretraining set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES
from training.demo.items import ITEM_SIZE, build_item_folders, paint_single_item
from training.errors import DataError

from .fakes import write_fake_fashion_mnist


def test_items_land_in_class_folders_from_their_own_split(tmp_path: Path) -> None:
    arrays = write_fake_fashion_mnist(tmp_path / "fm")
    out = build_item_folders(tmp_path / "items", n_train=30, n_valid=10, root=tmp_path / "fm")
    train, valid = sorted((out / "train").rglob("*.png")), sorted((out / "valid").rglob("*.png"))
    assert (len(train), len(valid)) == (30, 10)
    for path in train:
        assert path.parent.name == CLASS_NAMES[arrays["train_labels"][int(path.stem)]]
        assert np.asarray(Image.open(path)).shape == (ITEM_SIZE, ITEM_SIZE, 3)
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


def test_an_item_is_painted_as_a_scene_paints_it_in_a_contrasting_tint() -> None:
    """The garment's pixels differ from the background around them, as in a scene's cell."""
    item = np.zeros((28, 28), dtype=np.uint8)
    item[4:24, 8:20] = 255  # a solid block: its painted pixels are the tint alone
    painted = paint_single_item(np.random.default_rng(0), item).astype(np.float32)
    assert painted.shape == (ITEM_SIZE, ITEM_SIZE, 3)
    brightness = painted.mean(axis=2)
    corners = np.concatenate([brightness[:2, :2].ravel(), brightness[-2:, -2:].ravel()])
    centre = brightness[ITEM_SIZE // 2 - 2 : ITEM_SIZE // 2 + 2, ITEM_SIZE // 2 - 2 : ITEM_SIZE // 2 + 2]
    assert abs(float(np.median(centre)) - float(np.median(corners))) > 40
    again = paint_single_item(np.random.default_rng(0), item)
    np.testing.assert_array_equal(painted.astype(np.uint8), again)
