"""Training the tokenizer is deterministic: the same texts and settings give the same JSON, byte for
byte, for both vocabularies — in one process and in a fresh one (where `tokenizers`' hash maps, and
Python's, are seeded differently). The corpus is made of tied counts on purpose: every word occurs
equally often, so most candidate merges (and the words at the vocabulary's cut-off) tie."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from serving.bundle.tokenizer import TextTokenizer, Vocabulary

ROOT = Path(__file__).resolve().parents[2]
SIZES: dict[Vocabulary, int] = {"bpe": 300, "word": 150}


def tied_corpus() -> list[str]:
    """300 texts over 240 made-up words, each used exactly 5 times (and some capitalised or shouted)."""
    rng = random.Random(7)
    syllables = ["ka", "to", "ri", "mu", "se", "la", "no", "pe", "di", "vo", "gu", "ze", "bi", "fa"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)})[:240]
    tokens = [w for w in words for _ in range(5)] + list(",.!?;") * 20
    rng.shuffle(tokens)
    texts = [" ".join(tokens[i : i + 4]) for i in range(0, len(tokens), 4)]
    return [t.capitalize() if i % 3 == 0 else t.upper() if i % 17 == 0 else t for i, t in enumerate(texts)]


def digest(vocabulary: Vocabulary) -> str:
    spec = TextTokenizer.train(tied_corpus(), SIZES[vocabulary], 1, vocabulary).spec
    return hashlib.sha256(spec.encode()).hexdigest()


@pytest.mark.parametrize("vocabulary", ["bpe", "word"])
def test_training_twice_gives_the_same_tokenizer(vocabulary: Vocabulary) -> None:
    corpus = tied_corpus()
    first, *again = (TextTokenizer.train(corpus, SIZES[vocabulary], 1, vocabulary) for _ in range(3))
    assert first.vocab_size == SIZES[vocabulary]  # the cut-off falls among tied candidates
    for other in again:
        assert other.spec == first.spec
        assert other.encode(corpus) == first.encode(corpus)


def test_a_fresh_process_trains_the_same_tokenizers() -> None:
    here = {v: digest(v) for v in SIZES}
    code = (
        "import json; from tests.serving.test_tokenizer_determinism import SIZES, digest; "
        "print(json.dumps({v: digest(v) for v in SIZES}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "RAYON_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True)
    assert json.loads(child.stdout.decode().splitlines()[-1]) == here
