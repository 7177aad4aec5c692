"""Validation accuracy of an exported sentiment bundle next to TF-IDF + logistic regression, both on
the same split of the same reviews, measured in the same run.

The baseline is what a practitioner would try first: word uni- and bigrams, sublinear TF-IDF,
logistic regression with C chosen by 5-fold cross-validation on the training split only (scikit-learn,
a benchmark-only dependency: `pip install -e '.[bench]'`). The bundle answers through its own
pipeline (ONNX Runtime fp16, texts cut at its token limit), as the server would. Prints one JSON line.

    python bench/sentiment_quality.py --bundle models/reviews [--data data/reviews]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from serving.bundle import load_bundle, resolve_version


def read_split(data: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    with (data / "reviews.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["is_valid"].lower() != "true"]
    valid = [r for r in rows if r["is_valid"].lower() == "true"]
    return (
        [r["text"] for r in train],
        [r["label"] for r in train],
        [r["text"] for r in valid],
        [r["label"] for r in valid],
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/reviews"))
    parser.add_argument("--data", type=Path, default=Path("data/reviews"))
    args = parser.parse_args()
    train_x, train_y, valid_x, valid_y = read_split(args.data)
    bundle = load_bundle(args.bundle)
    began = time.perf_counter()
    answers = [a["label"] for i in range(0, len(valid_x), 32) for a in bundle.predict(valid_x[i : i + 32])]
    seconds = time.perf_counter() - began
    ours = float(np.mean(np.asarray(answers) == np.asarray(valid_y)))
    baseline = tfidf_accuracy(train_x, train_y, valid_x, valid_y)
    majority = max(set(train_y), key=train_y.count)
    print(json.dumps({
        "bench": "sentiment_quality", "bundle": str(resolve_version(args.bundle)), "data": str(args.data),
        "train": len(train_x), "valid": len(valid_x),
        "bundle_accuracy": round(ours, 4), "bundle_texts_s": round(len(valid_x) / seconds, 1),
        "tfidf_lr": baseline, "majority_accuracy": round(float(np.mean(np.asarray(valid_y) == majority)), 4),
        "ratio": round(ours / baseline["accuracy"], 3),
        "gap_points": round(100 * (baseline["accuracy"] - ours), 1), "target_gap_points": 3,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
