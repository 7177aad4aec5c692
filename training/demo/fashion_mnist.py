"""Read Fashion-MNIST from the IDX files the Debian package `dataset-fashion-mnist` installs.

The demo data sets are built from real photos of clothing rather than synthetic shapes, and the
Debian package puts them on disk without any network access. The IDX format is tiny (a big-endian
header, then raw bytes), so we parse it here rather than depend on a downloader.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from training.errors import DataError

__all__ = [
    "CLASS_NAMES",
    "FASHION_MNIST_DIR",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES: tuple[str, ...] = (
    "t_shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
"""Label i of Fashion-MNIST is CLASS_NAMES[i]; names are single tokens so they work as tags."""

IMAGES_MAGIC = 2051
"""IDX magic of an unsigned-byte array with 3 dimensions (count, rows, columns)."""
LABELS_MAGIC = 2049
"""IDX magic of an unsigned-byte array with 1 dimension (count)."""

_UBYTE = 0x08
_FILE_STEMS = {"train": "train", "test": "t10k"}
_INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass the folder "
    "holding the four *-ubyte.gz files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
)


def load_fashion_mnist(
    split: Literal["train", "test"], root: Path = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Return one split as uint8 images (N, 28, 28) and int64 labels (N,) indexing CLASS_NAMES.

    Raises DataError when the folder or a file is missing, or a file is not a well-formed
    Fashion-MNIST IDX file; the message names the file and says how to fix it.
    """
    if split not in _FILE_STEMS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Fashion-MNIST folder {root} does not exist; {_INSTALL_HINT}")
    stem = _FILE_STEMS[split]
    images_path = root / f"{stem}-images-idx3-ubyte.gz"
    labels_path = root / f"{stem}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DataError(f"Fashion-MNIST file {path.name} is missing from {root}; {_INSTALL_HINT}")

    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]} pixels, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels; the two files must come from the same split"
        )
    if len(labels) and int(labels.max()) >= len(CLASS_NAMES):
        raise DataError(
            f"{labels_path}: label {int(labels.max())} is out of range, expected 0..{len(CLASS_NAMES) - 1}"
        )
    return images, labels.astype(np.int64)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes, checking its magic number and its length.

    `magic` encodes the number of dimensions (2049: 1-D labels, 2051: 3-D images), so checking it
    catches an images file passed where labels were expected, as well as files that are not IDX.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot decompress ({e}); expected a gzipped IDX file") from e

    if len(data) < 4:
        raise DataError(f"{path}: file is {len(data)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        raise DataError(f"{path}: magic number is {found}, expected {magic}; not the expected IDX file")
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: file is {len(data)} bytes, too short for a {ndim}-D IDX header")
    shape = struct.unpack(f">{ndim}i", data[4:header_len])
    expected = int(np.prod(shape, dtype=np.int64))
    if min(shape) < 0 or len(data) - header_len != expected:
        raise DataError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(data) - header_len}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file, the inverse of `read_idx`.

    Lets a test or a small demo save a subset of Fashion-MNIST in the same layout the loader reads.
    """
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer stores unsigned bytes only, got dtype {array.dtype}")
    magic = (_UBYTE << 8) | array.ndim
    header = struct.pack(f">i{array.ndim}i", magic, *array.shape)
    # mtime=0 and no embedded file name: the same array always gives the same bytes.
    Path(path).write_bytes(gzip.compress(header + np.ascontiguousarray(array).tobytes(), mtime=0))
