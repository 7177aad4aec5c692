"""How to split: each splitter maps an `ItemList` to (train indices, valid indices)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.data import (
    ColumnSplitter,
    FileListSplitter,
    FolderSplitter,
    ItemList,
    RandomSplitter,
    SplitItems,
)
from training.errors import DataError

from .helpers import read_rows, write_csv, write_image


def texts(n: int) -> ItemList:
    return ItemList.from_list([f"text {i}" for i in range(n)])


def test_random_splitter_gives_the_same_split_for_the_same_seed() -> None:
    assert RandomSplitter(0.2, seed=7)(texts(50)) == RandomSplitter(0.2, seed=7)(texts(50))


def test_random_splitter_gives_another_split_for_another_seed() -> None:
    assert RandomSplitter(0.2, seed=7)(texts(50))[1] != RandomSplitter(0.2, seed=8)(texts(50))[1]


@pytest.mark.parametrize(("n", "pct", "n_valid"), [(50, 0.2, 10), (96, 0.25, 24), (10, 0.01, 1), (7, 0.5, 4)])
def test_random_splitter_validates_the_asked_fraction_and_at_least_one(
    n: int, pct: float, n_valid: int
) -> None:
    train, valid = RandomSplitter(pct)(texts(n))
    assert len(valid) == n_valid
    assert len(train) == n - n_valid


def test_random_splitter_sides_are_sorted_disjoint_and_cover_every_item() -> None:
    train, valid = RandomSplitter(0.3, seed=1)(texts(40))
    assert not set(train) & set(valid)
    assert sorted(train + valid) == list(range(40))
    assert train == sorted(train) and valid == sorted(valid)
    assert valid != list(range(len(valid)))  # shuffled, not the first items


def test_random_splitter_leaves_the_global_random_state_alone() -> None:
    before = torch.random.get_rng_state()
    RandomSplitter(0.2, seed=3)(texts(20))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("pct", [0.0, 1.0, -0.1, 1.5])
def test_random_splitter_rejects_a_fraction_outside_zero_and_one(pct: float) -> None:
    with pytest.raises(DataError, match=rf"valid_pct must be between 0 and 1, got {pct}"):
        RandomSplitter(pct)(texts(10))


@pytest.fixture
def flagged(small_tags: Path) -> Path:
    """small_tags/flagged.csv: image_name, is_valid (one spelling per row, rows 0–7)."""
    values = ["true", "false", "1", "0", "yes", "no", " Yes ", "FALSE"]
    write_csv(
        small_tags / "flagged.csv",
        ["image_name", "is_valid"],
        [[f"img_{i:03d}", v] for i, v in enumerate(values)],
    )
    return small_tags


def test_column_splitter_reads_true_false_one_zero_yes_no_in_any_case(flagged: Path) -> None:
    items = ItemList.from_csv(flagged, "flagged.csv", folder="train", suffix=".jpg")
    assert ColumnSplitter()(items) == ([1, 3, 5, 7], [0, 2, 4, 6])


def test_column_splitter_treats_an_empty_cell_as_training(small_tags: Path) -> None:
    write_csv(small_tags / "f.csv", ["image_name", "is_valid"], [["img_000", ""], ["img_001", "true"]])
    items = ItemList.from_csv(small_tags, "f.csv", folder="train", suffix=".jpg")
    assert ColumnSplitter()(items) == ([0], [1])


def test_column_splitter_names_the_line_and_value_it_cannot_read(small_tags: Path) -> None:
    write_csv(
        small_tags / "f.csv",
        ["image_name", "valid"],
        [["img_000", "no"], ["img_001", "yes"], ["img_002", "maybe"]],
    )
    items = ItemList.from_csv(small_tags, "f.csv", folder="train", suffix=".jpg")
    with pytest.raises(DataError, match=r"^f\.csv line 4: valid='maybe' is not true/false$"):
        ColumnSplitter("valid")(items)


def test_column_splitter_names_a_missing_column(small_tags: Path) -> None:
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    with pytest.raises(DataError, match=r"^labels\.csv line 2: no column 'is_valid'$"):
        ColumnSplitter()(items)


def test_column_splitter_needs_items_that_came_from_a_csv() -> None:
    with pytest.raises(DataError, match=r"ColumnSplitter\('is_valid'\) needs items read from a CSV"):
        ColumnSplitter()(texts(3))


def write_layout(root: Path) -> ItemList:
    """root/{train,valid}/{cat,dog}/*.png, read with from_folder (sorted: train first)."""
    for split in ("train", "valid"):
        for cls in ("cat", "dog"):
            write_image(root / split / cls / "1.png")
    return ItemList.from_folder(root)


def test_folder_splitter_splits_by_the_train_and_valid_folders(tmp_path: Path) -> None:
    items = write_layout(tmp_path / "pets")
    train, valid = FolderSplitter()(items)
    assert [Path(items.items[i]).parts[-3] for i in train] == ["train", "train"]
    assert [Path(items.items[i]).parts[-3] for i in valid] == ["valid", "valid"]


def test_folder_splitter_uses_the_nearest_folder_even_under_a_folder_named_valid(tmp_path: Path) -> None:
    items = write_layout(tmp_path / "valid" / "pets")  # e.g. ~/valid/pets/train/cat/1.png
    assert FolderSplitter()(items) == ([0, 1], [2, 3])


def test_folder_splitter_takes_other_folder_names(tmp_path: Path) -> None:
    for name in ("trn/a.png", "val/b.png", "trn/c.png"):
        write_image(tmp_path / name)
    items = ItemList.from_folder(tmp_path)
    assert FolderSplitter(train="trn", valid="val")(items) == ([0, 1], [2])


def test_file_list_splitter_from_valid_txt_validates_exactly_the_listed_images(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    train, valid = FileListSplitter.from_file(tag_images / "valid.txt")(items)
    assert valid == list(range(72, 96))
    assert train == list(range(72))


def test_file_list_splitter_matches_names_with_or_without_their_extension(small_tags: Path) -> None:
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    assert FileListSplitter.from_names(["img_001.jpg", "img_004"])(items) == (
        [0, 2, 3, *range(5, 12)],
        [1, 4],
    )


def test_file_list_splitter_ignores_blank_lines_and_surrounding_spaces(small_tags: Path) -> None:
    (small_tags / "v.txt").write_text("\n  img_002.jpg \n\nimg_003\n", encoding="utf-8")
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    assert FileListSplitter.from_file(small_tags / "v.txt")(items)[1] == [2, 3]


def test_file_list_splitter_names_the_list_and_the_names_that_match_no_item(small_tags: Path) -> None:
    (small_tags / "v.txt").write_text("img_001\nimg_999\nimg_001.png\n", encoding="utf-8")
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    with pytest.raises(
        DataError, match=r"^v\.txt: 2 names match no item, e\.g\. \['img_001\.png', 'img_999'\]$"
    ):
        FileListSplitter.from_file(small_tags / "v.txt")(items)
    with pytest.raises(DataError, match=r"^the valid list: 1 names match no item, e\.g\. \['cat'\]$"):
        FileListSplitter.from_names(["cat"])(items)


def test_file_list_splitter_from_a_missing_file_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"valid\.txt: no such file \(expected one image name per line\)"):
        FileListSplitter.from_file(tmp_path / "valid.txt")


def test_split_gives_aligned_train_and_valid_item_lists(small_tags: Path) -> None:
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    split = items.split(FileListSplitter.from_file(small_tags / "valid.txt"))
    assert isinstance(split, SplitItems)
    assert [Path(p).name for p in split.valid.items] == ["img_009.jpg", "img_010.jpg", "img_011.jpg"]
    assert split.valid.origins == ["labels.csv line 11", "labels.csv line 12", "labels.csv line 13"]
    assert split.valid.rows == read_rows(small_tags / "labels.csv")[9:]
    assert len(split.train) == 9


def test_split_refuses_to_leave_training_empty() -> None:
    with pytest.raises(DataError, match=r"^RandomSplitter left no items for training$"):
        texts(1).split(RandomSplitter(0.2))


def test_split_refuses_to_leave_validation_empty(small_tags: Path) -> None:
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    with pytest.raises(DataError, match=r"^FileListSplitter left no items for validation$"):
        items.split(FileListSplitter.from_names([]))
