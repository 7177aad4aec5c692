"""Validation accuracy of sentiment bundles trained by `train-kit` (`hybrid`, `ngram`, `ulmfit`) next
to TF-IDF + logistic regression, on the same split of the same texts, measured in the same run.

Two sets: Pang & Lee's 1,500 reviews (`reviews.csv`, its own 1,200 + 300 split) and their 4,000
sentences (`sentences.csv`, split here: a seeded, label-stratified 20 % for validation). For each
seed, each arch is trained with the kit's defaults, exported, and answers through its bundle (ONNX
Runtime fp16, texts cut at its token limit), as the server would. `hybrid` and `ulmfit` of one seed
share that seed's language model (`ulmfit` is trained with `--encoder` on hybrid's `encoder.pt`):
the two differ only in their classifiers. A language model costs most of a run on a CPU (about an
hour on 2 cores for the reviews); `--encoder runs/sentiment/encoder.pt` gives every seed that one
instead, so seeds then vary the classifiers only (the reviews row; sentences train their own).

The baseline is what a practitioner would try first: word uni- and bigrams, sublinear TF-IDF,
logistic regression with C chosen by 5-fold cross-validation on the training split only (scikit-learn,
a benchmark-only dependency: `pip install -e '.[bench]'`). Prints one JSON line: per set, each arch's
accuracies, median and range over the seeds, and the median's ratio to the baseline.

    python bench/sentiment_quality.py [--data data/reviews] [--seeds 0,1,2] [--archs hybrid,ngram,ulmfit]
        [--encoder runs/sentiment/encoder.pt]
    python bench/sentiment_quality.py --bundle models/reviews    # one exported bundle, reviews only
"""

from __future__ import annotations

import argparse
import csv
import json
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


def split_sentences(data: Path, out: Path, seed: int = 0, valid_share: float = 0.2) -> Path:
    """`sentences.csv` (text,label) → `out/sentences.csv` with a seeded, stratified `is_valid`."""
    with (data / "sentences.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    valid: set[int] = set()
    for label in sorted({r["label"] for r in rows}):
        members = [i for i, r in enumerate(rows) if r["label"] == label]
        valid |= set(rng.choice(members, round(len(members) * valid_share), replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sentences.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_valid"])
        writer.writerows([r["text"], r["label"], str(i in valid).lower()] for i, r in enumerate(rows))
    return out


def logistic_accuracy(
    features: Any, train_x: Any, train_y: list[str], valid_x: Any, valid_y: list[str]
) -> dict[str, float]:
    """`features` (a scikit-learn transformer of texts or arrays), then logistic regression with C
    chosen by 5-fold cross-validation on the training split only; accuracy on the validation split."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    warnings.filterwarnings(
        "ignore", category=FutureWarning, module="sklearn"
    )  # 1.9 announces 1.10's defaults
    began = time.perf_counter()
    model = make_pipeline(features, LogisticRegressionCV(Cs=8, cv=5, max_iter=3000, scoring="accuracy"))
    model.fit(train_x, train_y)
    accuracy = float(np.mean(model.predict(valid_x) == np.asarray(valid_y)))
    return {"accuracy": round(accuracy, 4), "fit_s": round(time.perf_counter() - began, 1)}


def tfidf_accuracy(
    train_x: list[str], train_y: list[str], valid_x: list[str], valid_y: list[str]
) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    return logistic_accuracy(vectorizer, train_x, train_y, valid_x, valid_y)


def bundle_accuracy(bundle_path: Path, valid_x: list[str], valid_y: list[str]) -> float:
    bundle = load_bundle(bundle_path)
    answers = [a["label"] for i in range(0, len(valid_x), 32) for a in bundle.predict(valid_x[i : i + 32])]
    return round(float(np.mean(np.asarray(answers) == np.asarray(valid_y))), 4)


def train_and_score(
    data: Path, csv_name: str, arch: str, seed: int, work: Path, split: Split, encoder: Path | None
) -> dict[str, Any]:
    """One run of the kit's defaults (`arch`, `seed`), exported and scored through its bundle."""
    from training.run import run_training
    from training.tasks import config_for

    out = work / f"{csv_name}-{arch}-{seed}"
    options: dict[str, Any] = {"task": "sentiment", "arch": arch, "data": data, "csv": csv_name}
    options |= {"seed": seed, "out": out}
    if csv_name != "reviews.csv":
        options["extra_csv"] = "none"
    if encoder is not None:
        options |= {"encoder": encoder, "lm_epochs": 0}
    began = time.perf_counter()
    run_training(config_for(options))
    trained = time.perf_counter() - began
    # each export in a process of its own, as `train-kit export` runs: torch's exporter fixes the
    # token axis of a second LSTM exported in one process (`refuse_fixed_axes`)
    command = [sys.executable, "-m", "training", "export", "--out", str(out), "--stage", "clf"]
    command += ["--name", f"{arch}-{seed}", "--models", str(work / "models")]
    subprocess.run(command, check=True, capture_output=True)
    bundle = work / "models" / f"{arch}-{seed}"
    return {"accuracy": bundle_accuracy(bundle, split[2], split[3]), "train_s": round(trained)}


def summary(accuracies: list[float], baseline: float) -> dict[str, Any]:
    median = statistics.median(accuracies)
    return {
        "accuracies": accuracies,
        "median": median,
        "range": [min(accuracies), max(accuracies)],
        "ratio": round(median / baseline, 3),
    }


def measure_set(
    data: Path, csv_name: str, archs: list[str], seeds: list[int], work: Path, encoder: Path | None = None
) -> dict[str, Any]:
    split = read_split(data, csv_name)
    baseline = tfidf_accuracy(*split)
    row: dict[str, Any] = {"train": len(split[0]), "valid": len(split[2]), "tfidf_lr": baseline}
    runs: dict[str, list[dict[str, Any]]] = {arch: [] for arch in archs}
    for seed in seeds:
        for arch in sorted(archs, key=["hybrid", "ngram", "ulmfit"].index):  # hybrid's LM first
            shared = encoder or work / f"{csv_name}-hybrid-{seed}" / "encoder.pt"
            given = shared if arch != "ngram" and shared.is_file() else None
            runs[arch].append(train_and_score(data, csv_name, arch, seed, work, split, given))
    for arch, results in runs.items():
        row[arch] = summary([r["accuracy"] for r in results], baseline["accuracy"])
        row[arch]["train_s"] = [r["train_s"] for r in results]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/reviews"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--archs", default="hybrid,ngram,ulmfit")
    parser.add_argument("--sets", default="reviews,sentences")
    parser.add_argument("--bundle", type=Path, help="score this one bundle on the reviews instead")
    parser.add_argument("--work", type=Path, help="keep runs and bundles here (default: a temp folder)")
    parser.add_argument("--encoder", type=Path, help="one language model's encoder.pt for every reviews run")
    args = parser.parse_args()
    if args.bundle is not None:
        split = read_split(args.data)
        ours = bundle_accuracy(args.bundle, split[2], split[3])
        baseline = tfidf_accuracy(*split)
        print(json.dumps({
            "bench": "sentiment_quality", "bundle": str(resolve_version(args.bundle)),
            "bundle_accuracy": ours, "tfidf_lr": baseline, "ratio": round(ours / baseline["accuracy"], 3),
        }))  # fmt: skip
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    archs = args.archs.split(",")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        sets = {}
        if "reviews" in args.sets:
            sets["reviews"] = measure_set(args.data, "reviews.csv", archs, seeds, work, args.encoder)
        if "sentences" in args.sets:
            folder = split_sentences(args.data, work / "sentences")
            sets["sentences"] = measure_set(folder, "sentences.csv", archs, seeds, work)
    print(json.dumps({
        "bench": "sentiment_quality", "data": str(args.data), "seeds": seeds, "encoder": str(args.encoder),
        "sets": sets,
        "wall_s": round(time.perf_counter() - began), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
