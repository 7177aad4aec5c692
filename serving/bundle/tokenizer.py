"""Text tokenization and numericalization, shared by training and serving (a bundle carries it).

fastai's rules first: capitalised words become `xxmaj word`, shouted ones `xxup word`, a character
repeated 4+ times `xxrep n c`; the text is lowercased and every text starts with `xxbos`. Then the
vocabulary, trained on the corpus with the `tokenizers` library (fast, in Rust), is one of:
- `bpe` (the default): byte-pair subwords, so no word is ever out of vocabulary; a character it
  never saw becomes `xxunk`; a word's first piece is marked `▁` (`wonderfulness` → `▁wonderful ness`);
- `word`: whole words and punctuation, as fastai's own; a word outside the vocabulary is `xxunk`.

The tokenizer travels inside `pipeline.pkl` as its JSON and is rebuilt on first use, so the server
tokenizes exactly as training did. Only plain strings and ints are pickled.

Training is deterministic: the same texts and settings give the same JSON, byte for byte. The word
trainer orders words by (count descending, word); the BPE trainer breaks ties between equally
frequent merges by token id, so every id must be fixed before merging: the start marker `▁` makes
every initial symbol a character of the sorted alphabet. (Tokenizers trained before marked the rest of
a word instead, `##ful`, a symbol the trainer numbers in hash-map order — huggingface/tokenizers#1794.
Their JSON carries its own model, pre-tokenizer and decoder: they load and encode as they always did.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

__all__ = ["SPECIAL_TOKENS", "TextTokenizer", "Vocabulary", "apply_rules"]

Vocabulary = Literal["bpe", "word"]

SPECIAL_TOKENS = ("xxpad", "xxunk", "xxbos", "xxmaj", "xxup", "xxrep")
"""In id order: padding is 0, unknown 1, beginning of text 2."""
PAD, UNK, BOS = 0, 1, 2
START = "\u2581"  # ▁, the start of a word (`bpe`)

_REPEAT = re.compile(r"(\S)\1{3,}")
_WORD = re.compile(r"\b[A-Za-z][A-Za-z']*\b")
_MARKERS = re.compile(r"\b(?:" + "|".join(SPECIAL_TOKENS) + r")\b")


def apply_rules(text: str) -> str:
    """fastai's rules on raw text, before lowercasing: capitals and repetitions become markers."""

    def repeat(match: re.Match[str]) -> str:
        return f" xxrep {len(match.group(0))} {match.group(1)} "

    def case(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) > 1 and word.isupper():
            return f"xxup {word}"
        if word[0].isupper() and word[1:] == word[1:].lower():
            return f"xxmaj {word}"
        return word

    return "xxbos " + _REPEAT.sub(repeat, _WORD.sub(case, text))


@dataclass(frozen=True)
class TextTokenizer:
    """A trained tokenizer, as its JSON (`tokenizers`' own format)."""

    spec: str
    _built: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        min_frequency: int = 2,
        vocabulary: Vocabulary = "bpe",
    ) -> TextTokenizer:
        """Learn a vocabulary of at most `vocab_size` tokens (subwords or words) from `texts`."""
        tokenizer = _empty(vocabulary)
        special = list(SPECIAL_TOKENS)
        trainer = (
            trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special)
            if vocabulary == "bpe"
            else trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special
            )
        )
        # The markers are special tokens, matched whole when encoding: no merge is spent learning them.
        tokenizer.train_from_iterator((_MARKERS.sub(" ", apply_rules(t)) for t in texts), trainer=trainer)
        return cls(tokenizer.to_str())

    @property
    def tokenizer(self) -> Tokenizer:
        if self._built is None:
            object.__setattr__(self, "_built", Tokenizer.from_str(self.spec))
        return self._built

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, `xxbos` first; an empty text is `[xxbos]` alone."""
        return [e.ids for e in self.tokenizer.encode_batch([apply_rules(t) for t in texts])]

    def tokens(self, text: str) -> list[str]:
        return list(self.tokenizer.encode(apply_rules(text)).tokens)

    def decode(self, ids: Sequence[int]) -> str:
        """The (rule-marked, lowercased) text the ids stand for: for reading, not for round trips of case."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}  # never the built Rust object: bundles unpickle plain data only

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "spec", state["spec"])
        object.__setattr__(self, "_built", None)


def _empty(vocabulary: Vocabulary) -> Tokenizer:
    """Words and punctuation split on whitespace first (as fastai's tokens are words), then, for
    `bpe`, each word's start marked `▁`, so no token is spent on spaces and every symbol the trainer
    starts from is one character (see the module's docstring)."""
    if vocabulary not in ("bpe", "word"):
        raise ValueError(f"vocabulary {vocabulary!r}: choose bpe or word")
    tokenizer = Tokenizer(
        models.BPE(unk_token="xxunk") if vocabulary == "bpe" else models.WordLevel(unk_token="xxunk")
    )
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    if vocabulary == "word":
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.decoder = decoders.WordPiece(prefix="##")  # never a `##`: words joined by spaces
        return tokenizer
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Metaspace(START, prepend_scheme="always", split=False)]
    )
    # Decoded as the `##` tokenizers were: a marker is a word too, `▁` a space, but none first, none
    # twice (`▁ xxunk`, a word whose first character is unknown) and none before . , ! or ?.
    markers = "|".join(SPECIAL_TOKENS)
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace(Regex(rf"\A(?=(?:{markers})\z)"), START),
            decoders.Metaspace(START, prepend_scheme="always", split=False),
            decoders.Fuse(),
            decoders.Replace(Regex(r"\A +| (?=[ .,!?])"), ""),
        ]
    )
    return tokenizer
