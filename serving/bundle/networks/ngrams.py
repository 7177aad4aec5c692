"""A bag of n-grams over the token ids a text model already reads: the strong, cheap half of a
sentiment classifier. In `serving/` because a bundle rebuilds it without the training kit.

The features are computed inside the network, from the same right-padded int64 ids (N, T) the LSTM
reads, so a bundle's preprocessing, its ONNX input and every serving path stay as they are, and
training and serving cannot disagree on them. A text's features are its unigrams (the token ids) and
its bigrams, each pair hashed into `buckets` slots after the vocabulary, counted once per text (Wang
& Manning's binarized features: a word's presence, not its count). Duplicates are found by sorting
each row, which exports to ONNX as TopK: no dictionary lookups outside the graph.

The classifier is linear in those features with naive-Bayes scaling (NBSVM, Wang & Manning 2012):
each feature's weight is its learned `weight` times its log-count `ratio` between the classes,
measured on the training texts (`set_ratios`). A feature that never appears in training has ratio 0,
so a text's answer rests on what training saw; padding is feature 0 and counts for nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from serving.bundle.networks.specs import NgramSpec

__all__ = ["NgramClassifier", "NgramSpec", "ngram_ids"]

_MIX = 1640531527
"""2^32 / golden ratio, mod 2^32 (Knuth's multiplicative hash): pairs spread evenly over the buckets.
A pair's key is below 2^32 (vocabularies are at most 65,536), so key × _MIX never overflows int64."""


def ngram_ids(tokens: torch.Tensor, vocab_size: int, buckets: int) -> torch.Tensor:
    """(N, T) token ids → (N, 2T - 1) feature ids, each distinct feature of a row once and 0 elsewhere:
    the unigrams, then `vocab_size` + the bucket of each pair of real tokens."""
    first, second = tokens[:, :-1], tokens[:, 1:]
    pairs = vocab_size + (first * vocab_size + second) * _MIX % buckets
    bigrams = torch.where((first != 0) & (second != 0), pairs, torch.zeros_like(pairs))
    ordered = torch.sort(torch.cat([tokens, bigrams], dim=1), dim=1).values
    before = torch.cat([torch.full_like(ordered[:, :1], -1), ordered[:, :-1]], dim=1)
    return torch.where(ordered == before, torch.zeros_like(ordered), ordered)


class NgramClassifier(nn.Module):
    """Class logits (N, classes) from the bag of n-grams: Σ over a text's features of
    `weight × ratio`, plus a bias. Starts at zero weights: it answers nothing until trained."""

    def __init__(self, spec: NgramSpec) -> None:
        super().__init__()
        self.spec = spec
        self.weight = nn.Embedding(spec.features, spec.n_classes, padding_idx=0)
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(spec.n_classes))
        self.register_buffer("ratio", torch.ones(spec.features, spec.n_classes))
        self.ratio: torch.Tensor

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return ngram_ids(tokens, self.spec.vocab_size, self.spec.buckets)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(tokens))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) feature ids (`features`) → (N, classes)."""
        return (self.weight(features) * self.ratio[features]).sum(1) + self.bias

    @torch.no_grad()
    def set_ratios(self, counts: torch.Tensor) -> None:
        """From `counts` (classes, features): how many training texts of each class hold each
        feature. A feature's ratio for a class is the log of how much likelier it is in that class's
        texts than in the others' (add-one smoothed over the features training saw); unseen: 0."""
        seen = counts.sum(0) > 0
        seen[0] = False
        inside = (counts + 1) * seen
        outside = (counts.sum(0, keepdim=True) - counts + 1) * seen
        rate_in = inside / inside.sum(1, keepdim=True)
        rate_out = outside / outside.sum(1, keepdim=True)
        ratio = torch.where(seen, rate_in.clamp_min(1e-30).log() - rate_out.clamp_min(1e-30).log(), 0.0)
        self.ratio.copy_(ratio.T)
