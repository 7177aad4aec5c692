"""A sentiment classifier of two branches over the same token ids: a bag of n-grams
(`serving.bundle.networks.ngrams`) and an AWD-LSTM classifier, their logits added.

On a few thousand texts, n-grams carry most of the sentiment and a language model trained on them
carries little (ULMFiT's own ablations: its gains need a corpus pretrained at ~100 M tokens). So the
n-gram branch is trained first, alone, and the LSTM learns what it adds: its last layer starts at zero,
so before the LSTM trains the hybrid answers exactly as the n-gram branch does.
"""

from __future__ import annotations

import torch
from torch import nn

from serving.bundle.networks.awd_lstm import TextClassifier
from serving.bundle.networks.ngrams import NgramClassifier
from serving.bundle.networks.specs import HybridSpec

__all__ = ["HybridClassifier", "HybridSpec"]


class HybridClassifier(nn.Module):
    def __init__(self, spec: HybridSpec) -> None:
        super().__init__()
        self.ngrams = NgramClassifier(spec.ngrams)
        self.lstm = TextClassifier(spec.lstm)
        last = self.lstm.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.ngrams(tokens) + self.lstm(tokens)
