"""A bag of n-grams over the token ids a text model already reads: a strong, cheap sentiment
classifier on its own (the default), and the linear half of a hybrid. In `serving/` because a bundle
rebuilds it without the training kit.

The features are computed inside the network, from the same right-padded int64 ids (N, T) the LSTM
reads, so a bundle's preprocessing, its ONNX input and every serving path stay as they are, and
training and serving cannot disagree on them. A text's features are its unigrams (the token ids)
and its bigrams, each pair hashed into `buckets` slots after the vocabulary, counted once per text
(binarized: a phrase's presence, not its count; trigrams as well were no better on the reviews and
worse on the sentences). Duplicates are found by sorting each row, which exports to ONNX as TopK:
no dictionary lookups outside the graph.

The classifier is linear in those features: one row of class weights per feature, summed, plus a
bias. How the rows are learnt is the training kit's business (naive-Bayes scaled logistic regression
with interpolation, `training.ngram_fit`); the bundle holds only their product, one table. Older
bundles, which kept the naive-Bayes ratios as a second table, are folded into one when loaded.
"""

from __future__ import annotations

from typing import Any

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
    """Class logits (N, classes): the sum of a text's feature rows, plus a bias. Starts at zero: it
    answers nothing until trained. Feature 0 (padding, and every repeat) holds zeros for good.

    Two classes keep one column, the second class's logit over the first's: softmax sees only that
    difference, so the answers are the same and the table is half the size."""

    def __init__(self, spec: NgramSpec) -> None:
        super().__init__()
        self.spec = spec
        self.weight = nn.Embedding(spec.features, spec.columns, padding_idx=0)
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(spec.n_classes))
        self._register_load_state_dict_pre_hook(self._older_layouts)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return ngram_ids(tokens, self.spec.vocab_size, self.spec.buckets)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(tokens))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) feature ids (`features`) → (N, classes)."""
        summed = self.weight(features).sum(1)
        if self.spec.columns < self.spec.n_classes:
            summed = torch.cat([torch.zeros_like(summed), summed], dim=1)
        return summed + self.bias

    @torch.no_grad()
    def set_table(self, table: torch.Tensor, bias: torch.Tensor) -> None:
        """Every feature's row of class logits (features, classes), and the class biases."""
        self.weight.weight.copy_(self._columns(table).to(self.weight.weight))
        self.bias.copy_(bias.to(self.bias))

    def _columns(self, table: torch.Tensor) -> torch.Tensor:
        return table[:, 1:] - table[:, :1] if self.spec.columns < table.shape[1] else table

    def _older_layouts(self, state: dict[str, Any], prefix: str, *_: Any) -> None:
        """A bundle or checkpoint written before the table was folded (weight and naive-Bayes `ratio`,
        which the forward pass only ever multiplied; one column per class) loads as what it stands
        for: its answers are the same."""
        key = f"{prefix}weight.weight"
        ratio = state.pop(f"{prefix}ratio", None)
        if ratio is not None:
            state[key] = state[key] * ratio
        if key in state:
            state[key] = self._columns(state[key])
