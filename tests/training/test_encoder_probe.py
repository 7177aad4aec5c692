"""The encoder probe benchmark: features in the texts' order whatever the batching, one JSON line."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from serving.bundle.networks.awd_lstm import TextClassifier
from serving.bundle.text_preprocess import cut
from training.sentiment import load_encoder

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from encoder_probe import pooled_features  # noqa: E402


def test_pooled_features_are_each_texts_own_whatever_its_batch_neighbours(
    sentiment_run: Path, review_texts: Path
) -> None:
    tokenizer, spec, state = load_encoder(sentiment_run / "encoder.pt")
    model = TextClassifier(dataclasses.replace(spec, n_classes=2))
    model.encoder.load_state_dict(state)
    with (review_texts / "reviews.csv").open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:20]
    texts[3] = texts[3] * 10  # over the limit: cut as the classifier cuts
    batched = pooled_features(model, tokenizer, texts, max_tokens=48, bs=8)
    with torch.inference_mode():
        alone = [model.pooled(torch.tensor([cut(ids, 48)])).numpy()[0] for ids in tokenizer.encode(texts)]
    np.testing.assert_allclose(batched, np.stack(alone), atol=1e-5)


def test_the_probe_prints_its_accuracy_beside_tfidfs(sentiment_run: Path, review_texts: Path) -> None:
    encoder = str(sentiment_run / "encoder.pt")
    script = str(ROOT / "bench" / "encoder_probe.py")
    data = str(review_texts)
    command = [sys.executable, script, "--encoder", encoder, "--data", data, "--max-tokens", "48"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["bench"] == "encoder_probe" and (result["train"], result["valid"]) == (300, 100)
    # on the balanced toy set (majority: 0.5) TF-IDF is near perfect, the frozen toy encoder clearly
    # better than chance (0.83 and 0.99 when written)
    assert result["tfidf_lr"]["accuracy"] >= 0.9 and result["probe_accuracy"] >= 0.6, result
    assert result["gap_points"] == round(100 * (result["tfidf_lr"]["accuracy"] - result["probe_accuracy"]), 1)
