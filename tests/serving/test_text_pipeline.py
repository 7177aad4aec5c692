"""A text bundle's preprocessing (limits, encodings) and the grouping of texts by length."""

from __future__ import annotations

import numpy as np
import pytest

from serving.bundle.text_batches import length_groups, run_by_length
from serving.bundle.text_preprocess import TextError, TextPreprocess, pad_ids
from serving.bundle.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(["a wonderful film", "a dull film", "i loved it", "i hated it"] * 5, 100, 1)


def test_a_text_over_the_limit_is_refused_naming_the_limit_or_cut_when_the_bundle_says(
    tokenizer: TextTokenizer,
) -> None:
    long = "a wonderful film " * 10
    with pytest.raises(TextError, match="31 tokens, over this model's limit of 8"):
        TextPreprocess(tokenizer, 8).prepare(long)
    ids = tokenizer.encode([long])[0]
    kept = TextPreprocess(tokenizer, 8, truncate=True).prepare(long)
    assert (
        kept.dtype == np.int64 and list(kept) == ids[:1] + ids[-7:]
    )  # xxbos and the end, where verdicts are


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (" \n\t", "empty"),
        (b"caf\xe9", "not valid UTF-8 (unexpected end of data at byte 3)"),
    ],
)
def test_empty_and_undecodable_texts_get_a_clear_reason(
    tokenizer: TextTokenizer, data: bytes | str, reason: str
) -> None:
    with pytest.raises(TextError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        TextPreprocess(tokenizer, 64).prepare(data)


def test_a_batch_is_right_padded_with_zeros(tokenizer: TextTokenizer) -> None:
    batch = TextPreprocess(tokenizer, 64)(["i loved it", "a film"])
    assert batch.shape == (2, 4) and batch[1, -1] == 0 and (batch[:, 0] == 2).all()  # xxbos first


def test_texts_group_by_length_so_no_group_is_over_half_padding() -> None:
    lengths = [3, 40, 4, 100, 6, 39, 7]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(7))
    for group in groups:
        assert max(lengths[i] for i in group) <= 2 * min(lengths[i] for i in group)
    assert groups == [[0, 2, 4], [6], [5, 1], [3]]


def test_running_by_length_answers_in_the_original_order() -> None:
    items = [np.arange(1, n + 1) for n in (5, 1, 30, 2, 31)]
    seen: list[tuple[int, int]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return batch.sum(axis=1, keepdims=True)  # padding adds nothing to a sum

    rows = run_by_length(items, run)
    assert [int(r[0]) for r in rows] == [int(i.sum()) for i in items]
    assert seen == [(2, 2), (1, 5), (2, 31)]  # 1 and 2 tokens share a batch; 30 and 31 too
    np.testing.assert_array_equal(pad_ids([np.array([7]), np.array([1, 2])]), [[7, 0], [1, 2]])
