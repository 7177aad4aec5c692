"""V2 tensor contents: raw bytes and BYTES elements decode exactly, and every mismatch is named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.server.tensors import TensorError, from_raw, pack_bytes, to_raw, unpack_bytes


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20))
def test_bytes_elements_survive_a_round_trip(elements: list[bytes]) -> None:
    assert unpack_bytes("x", [len(elements)], pack_bytes(elements)) == elements


def test_a_numeric_tensor_is_read_in_its_declared_shape() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(from_raw("x", "FP32", [2, 3, 4], to_raw(array, "FP32")), array)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2, 2], b"\0" * 12, "input 'x': shape [2, 2] of FP32 needs 16 bytes, got 12"),
        ("FP32", [-1, 2], b"", "input 'x': shape [-1, 2] has a negative dimension"),
        ("STRING", [1], b"", "datatype 'STRING' is not numeric"),
    ],
)
def test_a_numeric_tensor_that_disagrees_with_its_shape_is_refused(
    datatype: str, shape: list[int], raw: bytes, message: str
) -> None:
    with pytest.raises(TensorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_raw("x", datatype, shape, raw)


@pytest.mark.parametrize(
    ("shape", "raw", "message"),
    [
        ([2], pack_bytes([b"a"]), "shape [2] needs 2 BYTES elements, got 1"),
        ([1], b"\x01\x00", "BYTES element 0 is cut off in its length prefix"),
        ([1], b"\x05\x00\x00\x00ab", "BYTES element 0 declares 5 bytes, only 2 remain"),
    ],
)
def test_a_bytes_tensor_that_disagrees_with_its_shape_is_refused(
    shape: list[int], raw: bytes, message: str
) -> None:
    with pytest.raises(TensorError) as info:
        unpack_bytes("x", shape, raw)
    assert message in str(info.value)
