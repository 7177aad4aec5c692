"""Reading Fashion-MNIST's IDX files: round trips, and errors that say what is wrong and how to fix it."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.demo.fashion_mnist import (
    CLASS_NAMES,
    FASHION_MNIST_DIR,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    load_fashion_mnist,
    read_idx,
    write_idx,
)
from training.errors import DataError

from .fakes import write_fake_fashion_mnist


def test_load_returns_the_images_and_labels_that_were_written(tmp_path: Path) -> None:
    arrays = write_fake_fashion_mnist(tmp_path)
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(split, tmp_path)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, arrays[f"{split}_images"])
        np.testing.assert_array_equal(labels, arrays[f"{split}_labels"])
    assert load_fashion_mnist("train", tmp_path)[0].shape == (40, 28, 28)
    assert load_fashion_mnist("test", tmp_path)[1].shape == (20,)


def test_read_idx_parses_a_header_written_by_hand(tmp_path: Path) -> None:
    # Independent of write_idx, so a bug shared by reader and writer cannot hide.
    path = tmp_path / "x.gz"
    payload = bytes(range(2 * 3 * 4))
    path.write_bytes(gzip.compress(struct.pack(">iiii", 0x0803, 2, 3, 4) + payload))
    array = read_idx(path, IMAGES_MAGIC)
    assert array.shape == (2, 3, 4)
    assert array.tobytes() == payload


def test_write_idx_gives_the_same_bytes_every_time(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", labels)
    write_idx(tmp_path / "b.gz", labels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_class_names_are_ten_single_token_tags() -> None:
    assert len(CLASS_NAMES) == 10 == len(set(CLASS_NAMES))
    assert all(name.isidentifier() and name.islower() for name in CLASS_NAMES)


def test_a_missing_folder_says_how_to_install_the_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="dataset-fashion-mnist") as info:
        load_fashion_mnist("train", missing)
    assert str(missing) in str(info.value)
    assert "ubyte.gz" in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    load_fashion_mnist("train", tmp_path)  # the other split is still fine
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path)


def test_a_bad_magic_number_names_the_file(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path)
    # A labels file where the images belong: right format, wrong magic (2049 instead of 2051).
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros(40, dtype=np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: magic number is 2049, expected 2051"):
        load_fashion_mnist("train", tmp_path)


def test_a_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(struct.pack(">ii", LABELS_MAGIC, 100) + bytes(60)))
    with pytest.raises(DataError, match=r"labels\.gz: header declares shape \(100,\).*holds 60"):
        read_idx(path, LABELS_MAGIC)


def test_a_file_that_is_not_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match=r"labels\.gz: cannot decompress"):
        read_idx(path, LABELS_MAGIC)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8))
    with pytest.raises(DataError, match=r"40 images but train-labels-idx1-ubyte\.gz holds 39 labels"):
        load_fashion_mnist("train", tmp_path)


def test_a_label_outside_the_ten_classes_is_reported(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: label 10 is out of range"):
        load_fashion_mnist("test", tmp_path)


def test_images_that_are_not_28_by_28_are_reported(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="32x32 pixels, expected 28x28"):
        load_fashion_mnist("test", tmp_path)


@pytest.mark.skipif(
    not FASHION_MNIST_DIR.exists(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_the_installed_fashion_mnist_has_60000_train_and_10000_test_images() -> None:
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    assert train_images.shape == (60000, 28, 28) and train_labels.shape == (60000,)
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    assert set(np.unique(train_labels).tolist()) == set(range(10))
