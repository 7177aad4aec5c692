"""KServe V2 tensors on the wire: raw bytes ⇄ NumPy arrays, and BYTES elements ⇄ Python bytes.

Raw contents are the flattened row-major elements, little-endian, no padding. A BYTES element in
raw form is a 4-byte little-endian length followed by that many bytes. Every check here raises
`TensorError` with the tensor's name, so the client hears which input was wrong and how.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

__all__ = ["DTYPES", "TensorError", "element_count", "from_raw", "pack_bytes", "to_raw", "unpack_bytes"]

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


class TensorError(ValueError):
    """A tensor's declared shape, datatype and contents do not agree (gRPC: INVALID_ARGUMENT)."""


def element_count(name: str, shape: Sequence[int]) -> int:
    if any(d < 0 for d in shape):
        raise TensorError(f"input {name!r}: shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """A numeric tensor from its raw contents, checked against its declared shape and datatype."""
    if datatype not in DTYPES:
        raise TensorError(
            f"input {name!r}: datatype {datatype!r} is not numeric; expected one of {sorted(DTYPES)}"
        )
    dtype = DTYPES[datatype]
    expected = element_count(name, shape) * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {expected} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def unpack_bytes(name: str, shape: Sequence[int], raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor, exactly as many as its shape declares."""
    count = element_count(name, shape)
    view, offset = memoryview(raw), 0
    elements: list[bytes] = []
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError(
                f"input {name!r}: BYTES element {len(elements)} is cut off in its length prefix"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(
                f"input {name!r}: BYTES element {len(elements)} declares {length} bytes, "
                f"only {len(raw) - offset} remain"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
        if len(elements) > count:
            break  # already more than declared: no need to split the rest
    if len(elements) != count:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} needs {count} BYTES elements, got {len(elements)}"
        )
    return elements


def pack_bytes(elements: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)
