"""Composing scenes and writing the Planet-style multi-label demo set."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from training.demo.fashion_mnist import CLASS_NAMES
from training.demo.scenes import (
    ALL_TAGS,
    BACKGROUNDS,
    MAX_ITEMS,
    TEXTURES,
    SceneSetSummary,
    build_multilabel_scenes,
    compose_scene,
)
from training.errors import ConfigError, DataError

from .fakes import write_fake_fashion_mnist

SIZE = 48


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    write_fake_fashion_mnist(tmp_path / "fashion-mnist")
    return tmp_path / "fashion-mnist"


def build(out: Path, root: Path, **options: Any) -> SceneSetSummary:
    """A small, fast set (12 train + 6 valid scenes of 48 px, seed 0) unless `options` say otherwise."""
    settings: dict[str, Any] = {"n_train": 12, "n_valid": 6, "size": SIZE, "seed": 0, "root": root, **options}
    return build_multilabel_scenes(out, **settings)


def read_labels(out: Path) -> list[tuple[str, list[str]]]:
    with (out / "labels.csv").open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["image_name", "tags"]
        return [(name, tags.split(" ")) for name, tags in reader]


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def items(n: int, value: int | None = None, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if value is not None:
        return [np.full((28, 28), value, dtype=np.uint8) for _ in range(n)]
    return [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(n)]


# compose_scene


@pytest.mark.parametrize("n_items", range(1, MAX_ITEMS + 1))
def test_a_scene_has_an_rgb_canvas_and_one_alpha_map_per_item(n_items: int) -> None:
    scene = compose_scene(np.random.default_rng(0), items(n_items), size=96)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.alphas.shape == (n_items, 96, 96) and scene.alphas.dtype == np.float32
    assert scene.alphas.min() >= 0.0 and scene.alphas.max() <= 1.0
    assert all(alpha.any() for alpha in scene.alphas)
    assert len(scene.tints) == n_items
    assert scene.background in BACKGROUNDS and scene.texture in TEXTURES
    assert scene.scene_tags == (scene.background, scene.texture)


def test_item_tints_contrast_with_the_background() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        scene = compose_scene(rng, items(3), size=SIZE)
        base = np.array(BACKGROUNDS[scene.background])
        assert all(np.linalg.norm(np.array(tint) - base) >= 150 for tint in scene.tints)


def test_pixels_outside_every_alpha_map_are_pure_background() -> None:
    # Random draws do not depend on item content, so blank items give the same scene minus the items.
    scene = compose_scene(np.random.default_rng(3), items(4), size=SIZE)
    blank = compose_scene(np.random.default_rng(3), items(4, value=0), size=SIZE)
    assert not blank.alphas.any()
    outside = scene.alphas.max(axis=0) == 0
    assert outside.any()
    np.testing.assert_array_equal(scene.image[outside], blank.image[outside])
    assert not np.array_equal(scene.image, blank.image)


def test_a_solid_item_shows_its_tint_where_it_is_on_top() -> None:
    scene = compose_scene(np.random.default_rng(4), items(2, value=255), size=SIZE)
    top = scene.alphas[-1] == 1.0
    assert top.sum() >= 20 * 20  # items shrink to fit a 48 px canvas
    assert (scene.image[top] == np.array(scene.tints[-1], dtype=np.uint8)).all()


def test_items_overlap_little() -> None:
    scene = compose_scene(np.random.default_rng(5), items(4, value=255), size=96)
    covered = (scene.alphas > 0).sum(axis=0)
    assert (covered > 1).mean() < 0.05


def test_compose_scene_is_deterministic_and_leaves_items_untouched() -> None:
    source = items(3)
    copies = [item.copy() for item in source]
    a = compose_scene(np.random.default_rng(9), source, size=SIZE)
    b = compose_scene(np.random.default_rng(9), source, size=SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    for item, copy in zip(source, copies, strict=True):
        np.testing.assert_array_equal(item, copy)


@pytest.mark.parametrize("n_items", [0, MAX_ITEMS + 1])
def test_a_scene_needs_one_to_four_items(n_items: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.4 items"):
        compose_scene(np.random.default_rng(0), items(n_items), size=SIZE)


# build_multilabel_scenes


def test_the_set_is_laid_out_like_planet(tmp_path: Path, fake_root: Path) -> None:
    out = tmp_path / "scenes"
    summary = build(out, fake_root)
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "train", "valid.txt"]
    rows = read_labels(out)
    names = [name for name, _ in rows]
    assert names == [f"train_{i:05d}" for i in range(12)] + [f"valid_{i:05d}" for i in range(6)]
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(f"{n}.jpg" for n in names)
    with Image.open(out / "train" / "valid_00003.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (SIZE, SIZE)
    valid = (out / "valid.txt").read_text().splitlines()
    assert valid == [f"valid_{i:05d}" for i in range(6)]
    assert set(valid) <= set(names)
    assert (summary.n_train, summary.n_valid, summary.out) == (12, 6, out)


def test_every_image_has_its_item_classes_one_background_and_one_texture(
    tmp_path: Path, fake_root: Path
) -> None:
    out = tmp_path / "scenes"
    build(out, fake_root, n_train=40)
    for name, tags in read_labels(out):
        assert len(tags) == len(set(tags)), name
        assert set(tags) <= set(ALL_TAGS), name
        classes = [t for t in tags if t in CLASS_NAMES]
        assert 1 <= len(classes) <= MAX_ITEMS, name
        assert len([t for t in tags if t in BACKGROUNDS]) == 1, name
        assert len([t for t in tags if t in TEXTURES]) == 1, name


def test_the_summary_counts_the_tags_in_labels_csv(tmp_path: Path, fake_root: Path) -> None:
    out = tmp_path / "scenes"
    summary = build(out, fake_root)
    rows = read_labels(out)
    for prefix, counts in (("train_", summary.train_tag_counts), ("valid_", summary.valid_tag_counts)):
        assert list(counts) == list(ALL_TAGS)
        expected = {
            tag: sum(tag in tags for name, tags in rows if name.startswith(prefix)) for tag in ALL_TAGS
        }
        assert counts == expected


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path, fake_root: Path) -> None:
    build(tmp_path / "a", fake_root, seed=11)
    build(tmp_path / "b", fake_root, seed=11)
    build(tmp_path / "c", fake_root, seed=12)
    assert all_files(tmp_path / "a") == all_files(tmp_path / "b")
    assert all_files(tmp_path / "a") != all_files(tmp_path / "c")


def test_more_training_scenes_leave_the_validation_scenes_unchanged(tmp_path: Path, fake_root: Path) -> None:
    build(tmp_path / "a", fake_root, n_train=5)
    build(tmp_path / "b", fake_root, n_train=9)
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert {k: v for k, v in a.items() if "valid_" in k} == {k: v for k, v in b.items() if "valid_" in k}


def test_train_scenes_use_only_train_items_and_valid_scenes_only_test_items(tmp_path: Path) -> None:
    # Give the splits disjoint classes, so the tags reveal which split each item came from.
    root = tmp_path / "fashion-mnist"
    write_fake_fashion_mnist(root, train_labels=np.arange(40) % 5, test_labels=5 + np.arange(20) % 5)
    out = tmp_path / "scenes"
    build(out, root, n_train=30, n_valid=20)
    train_classes, valid_classes = set(CLASS_NAMES[:5]), set(CLASS_NAMES[5:])
    for name, tags in read_labels(out):
        classes = {t for t in tags if t in CLASS_NAMES}
        assert classes <= (train_classes if name.startswith("train_") else valid_classes), name


def test_an_existing_non_empty_folder_is_kept_unless_overwrite_is_set(
    tmp_path: Path, fake_root: Path
) -> None:
    out = tmp_path / "scenes"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"already exists and is not empty.*overwrite=True"):
        build(out, fake_root)
    assert all_files(out) == {"precious.txt": b"keep me"}

    build(out, fake_root, overwrite=True)
    assert not (out / "precious.txt").exists()
    assert (out / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fashion-mnist", "scenes"]


def test_a_file_in_the_way_is_refused(tmp_path: Path, fake_root: Path) -> None:
    out = tmp_path / "scenes"
    out.write_text("not a folder")
    with pytest.raises(DataError, match="is a file"):
        build(out, fake_root, overwrite=True)
    assert out.read_text() == "not a folder"


def test_an_empty_existing_folder_is_filled(tmp_path: Path, fake_root: Path) -> None:
    out = tmp_path / "scenes"
    out.mkdir()
    build(out, fake_root)
    assert (out / "valid.txt").is_file()


def test_no_temporary_folders_are_left_behind(tmp_path: Path, fake_root: Path) -> None:
    parent = tmp_path / "sets"
    build(parent / "scenes", fake_root)
    build(parent / "scenes", fake_root, overwrite=True)
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build(parent / "other", tmp_path / "no-such-folder")
    assert [p.name for p in parent.iterdir()] == ["scenes"]


def test_a_failure_midway_leaves_no_output(tmp_path: Path) -> None:
    # The test split is missing: train scenes could be written before the failure is noticed.
    root = tmp_path / "fashion-mnist"
    write_fake_fashion_mnist(root)
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    parent = tmp_path / "sets"
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        build(parent / "scenes", root)
    assert not parent.exists() or list(parent.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_train": 0}, "n_train >= 1"), ({"n_valid": -1}, "n_valid >= 0"), ({"size": 16}, "at least 32 px")],
)
def test_bad_options_are_refused(
    tmp_path: Path, fake_root: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(tmp_path / "scenes", fake_root, **kwargs)
