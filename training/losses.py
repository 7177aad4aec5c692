"""Losses the tasks need beyond torch's own: each a thin, named wrapper that says what it ignores."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["PixelCrossEntropy", "next_token_loss"]


class PixelCrossEntropy(nn.Module):
    """Per-pixel cross-entropy of (N, C, H, W) logits against (N, H, W) codes, `void` pixels ignored.

    Masks travel as uint8 (a quarter of the memory of int64); they become class indices here.
    """

    def __init__(self, void: int | None = None) -> None:
        super().__init__()
        self.void = void

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ignore = -100 if self.void is None else self.void
        return functional.cross_entropy(logits, targets.long(), ignore_index=ignore)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A language model's cross-entropy: (N, T, vocab) logits against (N, T) next tokens."""
    return functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
