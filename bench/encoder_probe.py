"""How much sentiment a text encoder already carries, in minutes instead of a classifier's half hour.

The encoder (an `encoder.pt` from `train-kit sentiment`, or a local pretrained one) stays frozen. Each
review is cut exactly as the classifier cuts it, read once, and concat-pooled (the classifier's own
`pooled`: last step, max and mean); logistic regression (C by 5-fold cross-validation on the
training split) is fitted on those features and scored on the validation split, beside TF-IDF +
logistic regression on the same split in the same run. A better encoder probes higher; use it to
compare encoders before fine-tuning one. Prints one JSON line.

    python bench/encoder_probe.py --encoder runs/sentiment/encoder.pt [--data data/reviews]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from sentiment_quality import logistic_accuracy, read_split, reported, tfidf_accuracy  # noqa: E402

from serving.bundle.networks.awd_lstm import TextClassifier  # noqa: E402
from serving.bundle.text_preprocess import cut  # noqa: E402
from serving.bundle.tokenizer import TextTokenizer  # noqa: E402
from training.data.text import pad_batch  # noqa: E402
from training.sentiment import load_encoder  # noqa: E402


def pooled_features(
    model: TextClassifier, tokenizer: TextTokenizer, texts: list[str], max_tokens: int, bs: int = 16
) -> np.ndarray:
    """(len(texts), 3 × emb) features, in the texts' order; batches of similar length, as served."""
    ids = [cut(row, max_tokens) for row in tokenizer.encode(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    features = np.empty((len(ids), 3 * model.encoder.embedding.embedding_dim), np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), bs):
            chunk = order[start : start + bs]
            features[chunk] = model.pooled(pad_batch([ids[i] for i in chunk])).numpy()
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/reviews"))
    parser.add_argument("--max-tokens", type=int, default=512, help="the classifier's cut")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_x, train_y, valid_x, valid_y = read_split(args.data)
    tokenizer, spec, state = load_encoder(args.encoder)
    model = TextClassifier(dataclasses.replace(spec, n_classes=2))
    model.encoder.load_state_dict(state)
    began = time.perf_counter()
    train_f = pooled_features(model, tokenizer, train_x, args.max_tokens)
    valid_f = pooled_features(model, tokenizer, valid_x, args.max_tokens)
    read_s = time.perf_counter() - began
    from sklearn.preprocessing import StandardScaler

    probe = logistic_accuracy(StandardScaler(), train_f, train_y, valid_f, valid_y)["accuracy"]
    baseline = tfidf_accuracy(train_x, train_y, valid_x, valid_y)
    print(json.dumps({
        "bench": "encoder_probe", "encoder": str(args.encoder), "data": str(args.data),
        "train": len(train_x), "valid": len(valid_x), "max_tokens": args.max_tokens,
        "probe_accuracy": round(probe, 4), "read_s": round(read_s, 1), "tfidf_lr": reported(baseline),
        "ratio": round(probe / baseline["accuracy"], 3),
        "gap_points": round(100 * (baseline["accuracy"] - probe), 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
