"""Inflating a compressed request body: what it was, never more than the limit, and a body that is
not what its encoding says is refused by name. Answers compressed only where it pays."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from serving.server.error_status import RequestError
from serving.server.http_bodies import COMPRESS_FROM, InflatesPastLimitError, compress_answer, inflate

TEXT = b'{"inputs": []}' * 1000
ENCODED = {
    "gzip": gzip.compress(TEXT),
    "deflate": zlib.compress(TEXT),
    "br": brotli.compress(TEXT),
}


@pytest.mark.parametrize("encoding", ENCODED)
def test_a_body_inflates_to_what_was_sent(encoding: str) -> None:
    assert inflate(ENCODED[encoding], encoding, len(TEXT)) == TEXT


def test_raw_deflate_is_read_too() -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert inflate(packer.compress(TEXT) + packer.flush(), "deflate", len(TEXT)) == TEXT


@pytest.mark.parametrize("encoding", ENCODED)
def test_one_byte_past_the_limit_is_refused(encoding: str) -> None:
    with pytest.raises(InflatesPastLimitError):
        inflate(ENCODED[encoding], encoding, len(TEXT) - 1)


@pytest.mark.parametrize("encoding", ENCODED)
def test_a_body_cut_short_or_not_compressed_is_refused_by_name(encoding: str) -> None:
    with pytest.raises(RequestError, match=f"the {encoding} request body (is cut short|does not inflate)"):
        inflate(ENCODED[encoding][: len(ENCODED[encoding]) // 2], encoding, len(TEXT))
    with pytest.raises(RequestError, match=f"the {encoding} request body"):
        inflate(b"plain text, not compressed at all", encoding, len(TEXT))


def test_a_bomb_stops_at_the_limit() -> None:
    """1 GiB of zeros in ~1 kB of br: inflating stops at the 1 MiB limit (it would take seconds)."""
    packer = brotli.Compressor(quality=5, lgwin=24)
    zeros = bytes(16 << 20)
    bomb = packer.process(zeros) + packer.flush() + (packer.process(zeros) + packer.flush()) * 63
    with pytest.raises(InflatesPastLimitError):
        inflate(bomb, "br", 1 << 20)


@pytest.mark.parametrize(
    ("accept_encoding", "refused"),
    [
        ("", False),
        ("gzip, deflate", False),
        ("gzip;q=1.0, identity; q=0.5, *;q=0", False),  # identity named: its own weight counts
        ("gzip, identity;q=0", True),
        ("deflate, *;q=0", True),
        ("gzip, *;q=0.000", True),
        ("gzip, IDENTITY;Q=0", True),
        ("gzip;q=oops, *;q=0.1", False),
    ],
)
def test_a_small_answer_is_compressed_only_where_uncompressed_is_refused(
    accept_encoding: str, refused: bool
) -> None:
    assert compress_answer(COMPRESS_FROM - 1, accept_encoding) is refused
    assert compress_answer(COMPRESS_FROM, accept_encoding)  # big enough: compressed if a coding is accepted
