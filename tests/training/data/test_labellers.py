"""How to label: labellers read raw labels; encoders learn classes from training and make tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.data import (
    CategoryEncoder,
    FileListSplitter,
    FolderSplitter,
    FromColumn,
    FromFolderName,
    FromPathFunction,
    ItemList,
    MultiCategoryEncoder,
    RandomSplitter,
    TagsFromColumn,
)
from training.errors import DataError, LabelError

from .helpers import set_tags, tag_source, write_csv, write_image


def rows(column: str, values: list[str]) -> ItemList:
    """Items as a CSV would give them: one row per value, origins "t.csv line 2", …"""
    return ItemList(
        items=[f"item {i}" for i in range(len(values))],
        rows=[{column: v} for v in values],
        origins=[f"t.csv line {i + 2}" for i in range(len(values))],
    )


def test_tags_from_column_splits_on_spaces_and_sorts(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    labels = TagsFromColumn("tags")(items)
    assert labels[:4] == [["red"], ["green", "square"], ["blue"], ["red", "square"]]


def test_tags_from_column_ignores_repeated_spaces_and_drops_duplicate_tags() -> None:
    labels = TagsFromColumn("tags")(rows("tags", ["  haze   road haze ", "road"]))
    assert labels == [["haze", "road"], ["road"]]


def test_tags_from_column_splits_on_a_custom_delimiter_and_strips_each_tag() -> None:
    labels = TagsFromColumn("genres", delim=";")(rows("genres", ["drama; comedy ;drama", "sci fi;;"]))
    assert labels == [["comedy", "drama"], ["sci fi"]]


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_tag_list_names_its_csv_line(small_tags: Path, blank: str) -> None:
    set_tags(small_tags, {"img_004": blank})
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    with pytest.raises(LabelError, match=r"^labels\.csv line 6: tag list is empty$"):
        TagsFromColumn("tags")(items)


def test_an_empty_tag_list_in_the_valid_split_is_found_while_labelling(small_tags: Path) -> None:
    set_tags(small_tags, {"img_010": ""})
    with pytest.raises(LabelError, match=r"^labels\.csv line 12: tag list is empty$"):
        tag_source(small_tags)


def test_a_valid_tag_the_training_split_never_shows_names_its_line_and_the_tag(small_tags: Path) -> None:
    set_tags(small_tags, {"img_010": "green purple"})
    with pytest.raises(LabelError) as err:
        tag_source(small_tags)
    message = str(err.value)
    assert message.startswith("labels.csv line 12: tag 'purple' does not occur in the training split")
    assert isinstance(err.value, DataError)  # the CLI reports it like any data error


def test_a_tag_only_in_training_is_a_class_that_validation_rows_simply_lack(small_tags: Path) -> None:
    set_tags(small_tags, {"img_000": "red rare"})
    src = tag_source(small_tags)
    assert src.classes == ["blue", "green", "rare", "red", "square"]
    assert src.y_train[0].tolist() == [0, 0, 1, 1, 0]
    assert src.y_valid[:, 2].sum() == 0


def test_tags_label_the_splits_as_multi_hot_rows_over_sorted_training_tags(small_tags: Path) -> None:
    src = tag_source(small_tags)
    assert src.classes == ["blue", "green", "red", "square"]
    assert src.y_train.dtype == torch.float32 and src.y_train.shape == (9, 4)
    assert src.y_train[1].tolist() == [0, 1, 0, 1]  # img_001: green square
    assert src.y_valid.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0], [1, 0, 0, 1]]  # img_009..img_011


def test_multi_category_encoder_round_trips_tag_lists() -> None:
    labels = [["road", "haze"], ["clear"], ["clear", "road", "water"]]
    encoder = MultiCategoryEncoder.fit(labels)
    assert encoder.classes == ["clear", "haze", "road", "water"]
    target = encoder.encode(labels, rows("tags", ["", "", ""]))
    assert target.tolist() == [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 1, 1]]
    assert [encoder.decode(t) for t in target] == [sorted(tags) for tags in labels]


def test_multi_category_decode_keeps_classes_at_or_above_one_half() -> None:
    encoder = MultiCategoryEncoder(["a", "b", "c", "d"])
    assert encoder.decode(torch.tensor([0.7, 0.2, 0.5, 0.49])) == ["a", "c"]


def test_multi_category_encode_names_the_item_with_an_unknown_tag() -> None:
    encoder = MultiCategoryEncoder(["a", "b"])
    with pytest.raises(LabelError, match=r"^t\.csv line 3: tag 'z' does not occur in the training split"):
        encoder.encode([["a"], ["b", "z"]], rows("tags", ["", ""]))


def test_from_column_reads_one_stripped_class_per_row() -> None:
    assert FromColumn("label")(rows("label", [" cat", "dog ", "cat"])) == ["cat", "dog", "cat"]


def test_from_column_names_the_line_of_an_empty_label() -> None:
    with pytest.raises(LabelError, match=r"^t\.csv line 3: column 'label' is empty$"):
        FromColumn("label")(rows("label", ["cat", "  "]))


def test_from_column_names_a_missing_column_and_needs_csv_rows() -> None:
    with pytest.raises(DataError, match=r"^t\.csv line 2: no column 'label'$"):
        FromColumn("label")(rows("tags", ["cat"]))
    with pytest.raises(DataError, match=r"labelling from column 'label' needs items read from a CSV"):
        FromColumn("label")(ItemList.from_list(["just text"]))


def test_category_encoder_round_trips_labels_as_indices_into_sorted_classes() -> None:
    labels = ["dog", "cat", "emu", "cat"]
    encoder = CategoryEncoder.fit(labels)
    assert encoder.classes == ["cat", "dog", "emu"]
    target = encoder.encode(labels, rows("label", labels))
    assert target.dtype == torch.long and target.tolist() == [1, 0, 2, 0]
    assert [encoder.decode(t) for t in target] == labels


def test_category_encoder_names_the_first_unknown_label_and_counts_them_all() -> None:
    encoder = CategoryEncoder(["cat", "dog"])
    with pytest.raises(
        LabelError, match=r"^t\.csv line 3: label 'emu' does not occur in the training split \(2 items"
    ):
        encoder.encode(["cat", "emu", "dog", "yak"], rows("label", ["", "", "", ""]))


def test_from_column_labels_a_csv_split_with_class_indices(small_tags: Path) -> None:
    write_csv(
        small_tags / "pets.csv",
        ["image_name", "label"],
        [[f"img_{i:03d}", "cat" if i % 3 else "dog"] for i in range(12)],
    )
    items = ItemList.from_csv(small_tags, "pets.csv", folder="train", suffix=".jpg")
    src = items.split(FileListSplitter.from_names(["img_009", "img_010"])).label(FromColumn("label"))
    assert src.classes == ["cat", "dog"]
    assert src.y_valid.tolist() == [1, 0]  # img_009 is a dog, img_010 a cat
    assert src.y_train.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]


def test_a_valid_label_missing_from_training_names_its_csv_line(small_tags: Path) -> None:
    write_csv(
        small_tags / "pets.csv",
        ["image_name", "label"],
        [[f"img_{i:03d}", "emu" if i == 10 else "cat"] for i in range(12)],
    )
    items = ItemList.from_csv(small_tags, "pets.csv", folder="train", suffix=".jpg")
    with pytest.raises(
        LabelError, match=r"^pets\.csv line 12: label 'emu' does not occur in the training split"
    ):
        items.split(FileListSplitter.from_file(small_tags / "valid.txt")).label(FromColumn("label"))


def test_from_folder_name_labels_an_imagenet_layout_by_parent_folder(tmp_path: Path) -> None:
    for split, cls, n in [("train", "cat", 2), ("train", "dog", 2), ("valid", "cat", 1), ("valid", "dog", 1)]:
        for i in range(n):
            write_image(tmp_path / split / cls / f"{i}.jpg", seed=i)
    src = ItemList.from_folder(tmp_path).split(FolderSplitter()).label(FromFolderName())
    assert FromFolderName()(src.train) == ["cat", "cat", "dog", "dog"]
    assert src.classes == ["cat", "dog"]
    assert src.y_train.tolist() == [0, 0, 1, 1]
    assert src.y_valid.tolist() == [0, 1]


def test_from_path_function_labels_each_item_by_its_path(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    parity = FromPathFunction(lambda p: "odd" if int(p.stem[-3:]) % 2 else "even")
    src = items.split(RandomSplitter(0.25, seed=0)).label(parity)
    assert src.classes == ["even", "odd"]
    assert parity(items)[:3] == ["even", "odd", "even"]
    parities = [int(Path(src.train.items[i]).stem[-3:]) % 2 for i in range(len(src.train))]
    assert src.y_train.tolist() == parities


def test_from_path_function_can_make_another_encoder(small_tags: Path) -> None:
    items = ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    words = FromPathFunction(
        lambda p: ["img", "odd" if int(p.stem[-3:]) % 2 else "even"], make_encoder=MultiCategoryEncoder.fit
    )
    src = items.split(FileListSplitter.from_file(small_tags / "valid.txt")).label(words)
    assert isinstance(src.encoder, MultiCategoryEncoder)
    assert src.classes == ["even", "img", "odd"]
    assert src.y_valid.tolist() == [[0, 1, 1], [1, 1, 0], [0, 1, 1]]  # img_009..img_011


def test_a_failing_path_function_names_the_item_and_keeps_the_cause(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    known = {"img_000": "a", "img_001": "b"}
    with pytest.raises(
        LabelError, match=r"^labels\.csv line 4: labelling function failed: 'img_002'$"
    ) as err:
        FromPathFunction(lambda p: known[p.stem])(items)
    assert isinstance(err.value.__cause__, KeyError)


def test_a_failing_path_function_on_listed_paths_names_the_path(small_tags: Path) -> None:
    path = small_tags / "train" / "img_003.jpg"
    with pytest.raises(LabelError, match=rf"^{path}: labelling function failed: boom$"):
        FromPathFunction(lambda p: (_ for _ in ()).throw(ValueError("boom")))(ItemList.from_list([path]))
