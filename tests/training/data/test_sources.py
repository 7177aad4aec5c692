"""Where the inputs are: `ItemList` from a CSV, a folder, in-memory records or a plain list."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import ColumnSplitter, ItemList
from training.errors import DataError

from .helpers import read_rows, write_csv, write_image


def test_from_csv_resolves_each_name_to_folder_name_suffix_in_csv_order(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    assert items.items == [tag_images / "train" / f"img_{i:03d}.jpg" for i in range(96)]
    assert len(items) == 96


def test_from_csv_keeps_each_row_and_its_line_in_the_file(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    assert items.origins is not None and items.rows is not None
    assert items.origins[0] == "labels.csv line 2"  # line 1 is the header
    assert items.origins[-1] == "labels.csv line 97"
    assert items.origin(5) == "labels.csv line 7"
    assert items.rows[1] == {"image_name": "img_001", "tags": "green square"}


def test_from_csv_reads_names_from_the_named_column(small_tags: Path) -> None:
    rows = read_rows(small_tags / "labels.csv")
    write_csv(
        small_tags / "files.csv",
        ["id", "file"],
        [[str(i), r["image_name"] + ".jpg"] for i, r in enumerate(rows)],
    )
    items = ItemList.from_csv(small_tags, "files.csv", column="file", folder="train")
    assert items.items[3] == small_tags / "train" / "img_003.jpg"
    assert items.rows is not None and items.rows[3] == {"id": "3", "file": "img_003.jpg"}


def test_blank_lines_do_not_shift_the_reported_line_numbers(small_tags: Path) -> None:
    (small_tags / "gappy.csv").write_text("image_name,tags\nimg_000,red\n\nimg_001,green\n", encoding="utf-8")
    items = ItemList.from_csv(small_tags, "gappy.csv", folder="train", suffix=".jpg")
    assert items.origins == ["gappy.csv line 2", "gappy.csv line 4"]


def test_a_csv_saved_with_a_byte_order_mark_still_has_its_first_column(small_tags: Path) -> None:
    text = (small_tags / "labels.csv").read_text(encoding="utf-8")
    (small_tags / "excel.csv").write_text(text, encoding="utf-8-sig")  # what Excel writes
    items = ItemList.from_csv(small_tags, "excel.csv", folder="train", suffix=".jpg")
    assert len(items) == 12
    assert items.rows is not None and "image_name" in items.rows[0]


def test_a_missing_column_is_named_beside_the_columns_that_are_there(tag_images: Path) -> None:
    with pytest.raises(
        DataError, match=r"^labels\.csv: no column 'filename' \(columns are: image_name, tags\)$"
    ):
        ItemList.from_csv(tag_images, "labels.csv", column="filename", folder="train", suffix=".jpg")


def test_a_missing_image_is_named_with_the_csv_line_that_lists_it(small_tags: Path) -> None:
    missing = small_tags / "train" / "img_004.jpg"
    missing.unlink()
    with pytest.raises(DataError) as err:
        ItemList.from_csv(small_tags, "labels.csv", folder="train", suffix=".jpg")
    assert str(err.value) == f"labels.csv line 6: image {missing} does not exist"


def test_a_wrong_suffix_makes_every_image_missing_and_says_which_path_was_tried(tag_images: Path) -> None:
    with pytest.raises(DataError, match=r"labels\.csv line 2: image .*img_000\.png does not exist"):
        ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".png")


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_name_cell_is_an_error_naming_line_and_column(small_tags: Path, blank: str) -> None:
    write_csv(small_tags / "holes.csv", ["image_name", "tags"], [["img_000", "red"], [blank, "green"]])
    with pytest.raises(DataError, match=r"^holes\.csv line 3: column 'image_name' is empty$"):
        ItemList.from_csv(small_tags, "holes.csv", folder="train", suffix=".jpg")


def test_a_csv_with_a_header_but_no_rows_is_an_error(small_tags: Path) -> None:
    write_csv(small_tags / "header.csv", ["image_name", "tags"], [])
    with pytest.raises(DataError, match=r"^header\.csv: has a header but no rows$"):
        ItemList.from_csv(small_tags, "header.csv", folder="train", suffix=".jpg")


def test_a_missing_csv_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such CSV file"):
        ItemList.from_csv(tmp_path, "nope.csv")


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """root/b.jpg, root/a.PNG, root/notes.txt, root/sub/c.jpeg, root/sub/deeper/d.webp."""
    root = tmp_path / "images"
    for name in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/d.webp"]:
        write_image(root / name)
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    return root


def test_from_folder_finds_images_recursively_sorted_by_path(image_tree: Path) -> None:
    items = ItemList.from_folder(image_tree)
    assert items.items == [
        image_tree / "a.PNG",
        image_tree / "b.jpg",
        image_tree / "sub" / "c.jpeg",
        image_tree / "sub" / "deeper" / "d.webp",
    ]
    assert items.rows is None and items.origins is None
    assert items.origin(1) == str(image_tree / "b.jpg")


def test_from_folder_without_recurse_stays_at_the_top_level(image_tree: Path) -> None:
    items = ItemList.from_folder(image_tree, recurse=False)
    assert items.items == [image_tree / "a.PNG", image_tree / "b.jpg"]


def test_from_folder_keeps_only_the_given_extensions_in_any_case(image_tree: Path) -> None:
    assert ItemList.from_folder(image_tree, extensions=[".png"]).items == [image_tree / "a.PNG"]
    assert ItemList.from_folder(image_tree, extensions=[".TXT"]).items == [image_tree / "notes.txt"]


def test_from_folder_with_no_matching_files_names_the_extensions(image_tree: Path) -> None:
    with pytest.raises(DataError, match=r"no files with extensions \['\.gif', '\.tif'\]"):
        ItemList.from_folder(image_tree, extensions=[".tif", ".gif"])


def test_from_folder_on_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent: no such folder"):
        ItemList.from_folder(tmp_path / "absent")


def test_from_rows_takes_records_and_numbers_them_as_rows(small_tags: Path) -> None:
    records = [{"image_name": "img_002", "tags": "red"}, {"image_name": "img_007", "tags": "green square"}]
    items = ItemList.from_rows(records, small_tags / "train", "image_name", suffix=".jpg")
    assert items.items == [small_tags / "train" / "img_002.jpg", small_tags / "train" / "img_007.jpg"]
    assert items.rows == records and items.rows[0] is not records[0]  # copied, not shared
    assert items.origins == ["row 0", "row 1"]


def test_from_rows_reports_a_missing_image_by_its_row_or_given_origin(small_tags: Path) -> None:
    records = [{"image_name": "img_002"}, {"image_name": "ghost"}]
    with pytest.raises(DataError, match=r"^row 1: image .*ghost\.jpg does not exist$"):
        ItemList.from_rows(records, small_tags / "train", "image_name", suffix=".jpg")
    with pytest.raises(DataError, match=r"^sheet B3: image"):
        ItemList.from_rows(
            records, small_tags / "train", "image_name", ".jpg", origins=["sheet B2", "sheet B3"]
        )


def test_from_rows_reads_dataframe_values_as_text_so_splitters_understand_them(small_tags: Path) -> None:
    # DataFrame.to_dict("records") gives bools, numbers and NaN for empty cells, not strings.
    records: list[dict[str, object]] = [
        {"image_name": "img_000", "is_valid": False, "n": 3},
        {"image_name": "img_001", "is_valid": True, "n": float("nan")},
        {"image_name": "img_002", "is_valid": None, "n": 1.5},
    ]
    items = ItemList.from_rows(records, small_tags / "train", "image_name", suffix=".jpg")  # type: ignore[arg-type]
    assert items.rows == [
        {"image_name": "img_000", "is_valid": "False", "n": "3"},
        {"image_name": "img_001", "is_valid": "True", "n": ""},
        {"image_name": "img_002", "is_valid": "", "n": "1.5"},
    ]
    assert ColumnSplitter("is_valid")(items) == ([0, 2], [1])


def test_from_list_checks_that_paths_exist(small_tags: Path) -> None:
    present = small_tags / "train" / "img_000.jpg"
    assert ItemList.from_list([present]).items == [present]
    with pytest.raises(DataError, match=r"img_404\.jpg: no such file"):
        ItemList.from_list([present, small_tags / "train" / "img_404.jpg"])


def test_from_list_keeps_texts_as_given_and_names_them_by_themselves() -> None:
    items = ItemList.from_list(["a cat on a mat", "no such file.jpg"])
    assert items.items == ["a cat on a mat", "no such file.jpg"]
    assert items.rows is None
    assert items.origin(1) == "no such file.jpg"


def test_subset_keeps_items_rows_and_origins_aligned(tag_images: Path) -> None:
    items = ItemList.from_csv(tag_images, "labels.csv", folder="train", suffix=".jpg")
    part = items.subset([5, 1, 90])
    assert part.items == [tag_images / "train" / f"img_{i:03d}.jpg" for i in (5, 1, 90)]
    assert part.rows is not None
    assert [r["image_name"] for r in part.rows] == ["img_005", "img_001", "img_090"]
    assert part.origins == ["labels.csv line 7", "labels.csv line 3", "labels.csv line 92"]
    assert len(items) == 96  # the original is untouched


def test_subset_of_a_plain_list_has_no_rows_and_names_items_by_themselves() -> None:
    part = ItemList.from_list(["x", "y", "z"]).subset([2, 0])
    assert part.items == ["z", "x"]
    assert part.rows is None and part.origins is None
    assert part.origin(0) == "z"
