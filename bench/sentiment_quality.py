"""Validation accuracy of sentiment bundles trained by `train-kit` next to TF-IDF + logistic
regression, split by split, with a paired significance test, measured in the same run.

Two sets: Pang & Lee's 1,500 reviews (`reviews.csv`: the project's own 1,200 + 300 split, then
seeded, label-stratified 20 % splits) and their 4,000 sentences (`sentences.csv`: seeded, stratified
20 % splits; seed 0 is the project's). One split proves little: on the reviews the spread between
splits is several times the spread between training seeds. For each split, each arch is trained
with the kit's defaults (`default` names the kit's default arch), exported, and answers through its
bundle (ONNX Runtime, texts cut at its token limit), as the server would. `hybrid` and `ulmfit` of one
split share that split's language model (`ulmfit` is trained with `--encoder` on hybrid's
`encoder.pt`); an LSTM run costs about an hour on 2 cores, the default about a minute.

The baseline is what a practitioner would try first: word uni- and bigrams, sublinear TF-IDF,
logistic regression with C chosen by 5-fold cross-validation on the training split only
(scikit-learn, a benchmark-only dependency: `pip install -e '.[bench]'`). Its solver stops early at
the chosen C; refitted to the optimum it scores differently (lower on the reviews' own split), so
both are reported and each arch is compared with the higher of the two. Per split: accuracies, the
difference, and McNemar's exact p-value on the texts one model gets right and the other wrong.
Prints one JSON line.

    python bench/sentiment_quality.py [--data data/reviews] [--splits 3] [--archs default,hybrid]
        [--sets reviews,sentences] [--encoder runs/sentiment/encoder.pt]
    python bench/sentiment_quality.py --bundle models/reviews    # one exported bundle, reviews only
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from serving.bundle import load_bundle, resolve_version

Split = tuple[list[str], list[str], list[str], list[str]]
LSTM_ARCHS = ("hybrid", "ulmfit")


def read_split(data: Path, name: str = "reviews.csv") -> Split:
    with (data / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["is_valid"].lower() != "true"]
    valid = [r for r in rows if r["is_valid"].lower() == "true"]
    return (
        [r["text"] for r in train],
        [r["label"] for r in train],
        [r["text"] for r in valid],
        [r["label"] for r in valid],
    )


def resplit(data: Path, name: str, out: Path, seed: int, valid_share: float = 0.2) -> Path:
    """`data/name` (text,label[,is_valid]) → `out/name` with a seeded, label-stratified `is_valid`;
    the folder's other CSVs (the LSTMs' unlabelled texts) are linked beside it."""
    with (data / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    valid: set[int] = set()
    for label in sorted({r["label"] for r in rows}):
        members = [i for i, r in enumerate(rows) if r["label"] == label]
        valid |= set(rng.choice(members, round(len(members) * valid_share), replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    with (out / name).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_valid"])
        writer.writerows([r["text"], r["label"], str(i in valid).lower()] for i, r in enumerate(rows))
    for other in data.glob("*.csv"):
        if other.name != name and not (out / other.name).exists():
            (out / other.name).symlink_to(other.resolve())
    return out


def logistic_accuracy(
    features: Any, train_x: Any, train_y: list[str], valid_x: Any, valid_y: list[str]
) -> dict[str, Any]:
    """`features` (a scikit-learn transformer of texts or arrays), then logistic regression with C
    chosen by 5-fold cross-validation on the training split only; accuracy on the validation split,
    as fitted (`accuracy`) and refitted to the optimum at that C (`optimum`)."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # next version's defaults
    began = time.perf_counter()
    fitted = make_pipeline(
        clone(features), LogisticRegressionCV(Cs=8, cv=5, max_iter=3000, scoring="accuracy")
    )
    fitted.fit(train_x, train_y)
    c = float(fitted[-1].C_[0])
    optimum = make_pipeline(clone(features), LogisticRegression(C=c, tol=1e-8, max_iter=100_000))
    optimum.fit(train_x, train_y)
    right = np.asarray(fitted.predict(valid_x)) == np.asarray(valid_y)
    right_optimum = np.asarray(optimum.predict(valid_x)) == np.asarray(valid_y)
    return {
        "accuracy": round(float(right.mean()), 4),
        "optimum": round(float(right_optimum.mean()), 4),
        "c": c,
        "fit_s": round(time.perf_counter() - began, 1),
        "right": right,
        "right_optimum": right_optimum,
    }


def reported(result: dict[str, Any]) -> dict[str, Any]:
    """A `logistic_accuracy` result as the JSON line shows it: its numbers, not its per-text answers."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def tfidf_accuracy(
    train_x: list[str], train_y: list[str], valid_x: list[str], valid_y: list[str]
) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    return logistic_accuracy(vectorizer, train_x, train_y, valid_x, valid_y)


def mcnemar(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Exact two-sided McNemar p-value: of the texts exactly one model gets right, how unlikely a
    split this uneven is if both were equally good (a fair coin per text)."""
    b, c = int((ours & ~theirs).sum()), int((~ours & theirs).sum())
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return round(min(1.0, 2 * tail), 4)


def bundle_answers(bundle_path: Path, valid_x: list[str], valid_y: list[str]) -> np.ndarray:
    """Per validation text: did the bundle answer its label?"""
    bundle = load_bundle(bundle_path)
    answers = [a["label"] for i in range(0, len(valid_x), 32) for a in bundle.predict(valid_x[i : i + 32])]
    return np.asarray(answers) == np.asarray(valid_y)


def train_and_score(
    data: Path, csv_name: str, arch: str, work: Path, split: Split, encoder: Path | None
) -> dict[str, Any]:
    """One run of the kit's defaults for `arch`, exported and scored through its bundle."""
    from training.run import run_training
    from training.tasks import config_for

    out = work / f"{data.name}-{csv_name}-{arch}"
    options: dict[str, Any] = {"task": "sentiment", "arch": arch, "data": data, "csv": csv_name, "out": out}
    if csv_name != "reviews.csv":
        options["extra_csv"] = "none"
    if encoder is not None:
        options |= {"encoder": encoder, "lm_epochs": 0}
    began = time.perf_counter()
    run_training(config_for(options))
    trained = time.perf_counter() - began
    # each export in a process of its own, as `train-kit export` runs: torch's exporter fixes the
    # token axis of a second LSTM exported in one process (`refuse_fixed_axes`)
    name = f"{data.name}-{Path(csv_name).stem}-{arch}"
    command = [sys.executable, "-m", "training", "export", "--out", str(out), "--stage", "clf"]
    command += ["--name", name, "--models", str(work / "models")]
    subprocess.run(command, check=True, capture_output=True)
    bundle = work / "models" / name
    size = sum(f.stat().st_size for f in resolve_version(bundle).iterdir())
    return {"right": bundle_answers(bundle, split[2], split[3]), "train_s": round(trained), "bundle_mb": size}


def measure_split(
    data: Path, csv_name: str, archs: list[str], work: Path, encoder: Path | None
) -> dict[str, Any]:
    split = read_split(data, csv_name)
    baseline = tfidf_accuracy(*split)
    best = "accuracy" if baseline["accuracy"] >= baseline["optimum"] else "optimum"
    theirs = baseline["right" if best == "accuracy" else "right_optimum"]
    row: dict[str, Any] = {
        "train": len(split[0]),
        "valid": len(split[2]),
        "tfidf_lr": reported(baseline),
    }
    for arch in sorted(archs, key=lambda a: a != "hybrid"):  # hybrid's language model first
        shared = encoder or work / f"{data.name}-{csv_name}-hybrid" / "encoder.pt"
        given = shared if arch in LSTM_ARCHS and shared.is_file() else None
        run = train_and_score(data, csv_name, arch, work, split, given)
        accuracy = float(run["right"].mean())
        row[arch] = {
            "accuracy": round(accuracy, 4),
            "minus_tfidf": round(accuracy - baseline[best], 4),
            "p_mcnemar": mcnemar(run["right"], theirs),
            "train_s": run["train_s"],
            "bundle_mb": round(run["bundle_mb"] / 2**20, 1),
        }
    return row


def summary(splits: dict[str, dict[str, Any]], arch: str) -> dict[str, Any]:
    accuracies = [s[arch]["accuracy"] for s in splits.values()]
    differences = [s[arch]["minus_tfidf"] for s in splits.values()]
    return {
        "median": statistics.median(accuracies),
        "range": [min(accuracies), max(accuracies)],
        "median_minus_tfidf": round(statistics.median(differences), 4),
        "worst_minus_tfidf": min(differences),
    }


def measure_set(
    data: Path, csv_name: str, archs: list[str], seeds: list[int | None], work: Path, encoder: Path | None
) -> dict[str, Any]:
    """Every split of one set (`None`: the folder's own `is_valid`), then each arch's summary."""
    splits: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        folder = data if seed is None else resplit(data, csv_name, work / f"split-{seed}", seed)
        splits["own" if seed is None else f"seed-{seed}"] = measure_split(
            folder, csv_name, archs, work, encoder
        )
    return {"splits": splits, **{arch: summary(splits, arch) for arch in archs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/reviews"))
    parser.add_argument("--splits", type=int, default=3, help="splits per set (the reviews' own first)")
    parser.add_argument("--archs", default="default", help="comma-separated; 'default' is the kit's default")
    parser.add_argument("--sets", default="reviews,sentences")
    parser.add_argument("--bundle", type=Path, help="score this one bundle on the reviews instead")
    parser.add_argument("--work", type=Path, help="keep runs and bundles here (default: a temp folder)")
    parser.add_argument("--encoder", type=Path, help="one language model's encoder.pt for every LSTM run")
    args = parser.parse_args()
    if args.bundle is not None:
        split = read_split(args.data)
        ours = float(bundle_answers(args.bundle, split[2], split[3]).mean())
        baseline = tfidf_accuracy(*split)
        print(json.dumps({
            "bench": "sentiment_quality", "bundle": str(resolve_version(args.bundle)),
            "bundle_accuracy": round(ours, 4), "tfidf_lr": reported(baseline),
            "ratio": round(ours / max(baseline["accuracy"], baseline["optimum"]), 3),
        }))  # fmt: skip
        return
    from training.tasks.sentiment import DEFAULT_ARCH

    archs = [DEFAULT_ARCH if a == "default" else a for a in args.archs.split(",")]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        sets = {}
        if "reviews" in args.sets:
            seeds: list[int | None] = [None, *range(1, args.splits)]
            sets["reviews"] = measure_set(args.data, "reviews.csv", archs, seeds, work, args.encoder)
        if "sentences" in args.sets:
            seeds = list(range(args.splits))
            sets["sentences"] = measure_set(
                args.data, "sentences.csv", archs, seeds, work / "sentences", None
            )
    print(json.dumps({
        "bench": "sentiment_quality", "data": str(args.data), "archs": archs, "default": DEFAULT_ARCH,
        "sets": sets, "wall_s": round(time.perf_counter() - began),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
