"""The text tokenizer: fastai's rules, a subword vocabulary with no out-of-vocabulary words (or a word
vocabulary whose unknown words are `xxunk`), and a bundle-safe pickle (plain data only)."""

from __future__ import annotations

import io

import pytest
import torch

from serving.bundle.tokenizer import BOS, PAD, SPECIAL_TOKENS, UNK, TextTokenizer, Vocabulary, apply_rules

CORPUS = [
    "The film was wonderful and the acting was superb .",
    "A dull , tedious film ; the plot made no sense .",
    "I loved every minute of this wonderful story .",
    "Terrible acting , a terrible script and a dull ending .",
] * 20


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)


def test_special_tokens_have_fixed_ids_and_no_merges_are_spent_on_them(tokenizer: TextTokenizer) -> None:
    vocab = tokenizer.tokenizer.get_vocab()
    assert not [t for t in vocab if t not in SPECIAL_TOKENS and "xx" in t]
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (vocab["xxpad"], vocab["xxunk"], vocab["xxbos"]) == (PAD, UNK, BOS)


def test_the_rules_mark_capitals_shouting_and_repetition() -> None:
    assert apply_rules("The film was GREAT!!!!") == "xxbos xxmaj The film was xxup GREAT xxrep 4 ! "
    assert apply_rules("") == "xxbos "


def test_every_text_starts_with_bos_and_round_trips_in_lowercase(tokenizer: TextTokenizer) -> None:
    (ids,) = tokenizer.encode(["The acting was wonderful ."])
    assert ids[0] == BOS
    assert tokenizer.decode(ids) == "xxbos xxmaj the acting was wonderful."
    assert tokenizer.encode([""]) == [[BOS]]


def test_unseen_words_become_subwords_and_unseen_characters_unknown(tokenizer: TextTokenizer) -> None:
    tokens = tokenizer.tokens("wonderfulness ☃")
    assert UNK not in tokenizer.encode(["wonderfulness"])[0]  # built from known pieces, never xxunk
    assert tokens[1] == "▁wonderful" and not tokens[2].startswith("▁") and tokens[-1] == "xxunk"
    assert tokenizer.decode(tokenizer.encode(["wonderfulness ☃ ."])[0]) == "xxbos wonderfulness xxunk."


def test_it_travels_in_a_weights_only_pickle_and_tokenizes_the_same(tokenizer: TextTokenizer) -> None:
    tokenizer.encode(["build the Rust object first"])  # a built tokenizer must not leak into the pickle
    buffer = io.BytesIO()
    torch.save(tokenizer, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals([TextTokenizer]):
        back = torch.load(buffer, weights_only=True)
    assert back.spec == tokenizer.spec
    assert back.encode(CORPUS[:4]) == tokenizer.encode(CORPUS[:4])


@pytest.mark.parametrize("vocabulary", ["bpe", "word"])
def test_both_vocabularies_give_special_tokens_their_fixed_ids(vocabulary: Vocabulary) -> None:
    vocab = TextTokenizer.train(CORPUS, 300, 1, vocabulary).tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_a_word_vocabulary_keeps_words_whole_and_makes_unseen_ones_unknown() -> None:
    words = TextTokenizer.train(CORPUS, vocab_size=300, min_frequency=1, vocabulary="word")
    assert words.tokens("The wonderfulness of it , wonderful") == [
        "xxbos", "xxmaj", "the", "xxunk", "of", "xxunk", ",", "wonderful",
    ]  # fmt: skip
    (ids,) = words.encode(["The acting was wonderful ."])
    assert words.decode(ids) == "xxbos xxmaj the acting was wonderful."
    size = len(SPECIAL_TOKENS) + 3
    capped = TextTokenizer.train(CORPUS, vocab_size=size, min_frequency=1, vocabulary="word")
    assert capped.vocab_size == size  # the most frequent words only
    assert capped.tokens("the tedious")[1:] == ["the", "xxunk"]


def test_an_unknown_vocabulary_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="vocabulary 'chars': choose bpe or word"):
        TextTokenizer.train(CORPUS, vocabulary="chars")  # type: ignore[arg-type]
