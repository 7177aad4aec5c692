"""Logits → scores, computed in float64 without overflow: sigmoid for independent labels,
softmax for one label out of many."""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "softmax"]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -logits.astype(np.float64)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, classes) logits → probabilities."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
