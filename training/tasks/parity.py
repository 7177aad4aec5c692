"""The parity measure of the tasks that answer one label with every class's probability (image
classes, text sentiment): ONNX fp16 must give the same label as PyTorch fp32 for ≥ 99.5 % of the
items and probabilities within the export's tolerance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.bundle import Parity
from serving.bundle.scores import softmax
from training.errors import ExportError

__all__ = ["MIN_AGREEMENT", "probability_parity"]

MIN_AGREEMENT = 0.995  # items with the identical answer (tags, or label)


def probability_parity(
    expected: np.ndarray, actuals: Sequence[np.ndarray], tolerance: float, items: str
) -> Parity:
    """PyTorch's logits against one or more ONNX runs of the same `items` (e.g. "validation texts");
    the worst run counts."""
    want = softmax(expected)
    gaps, agreements = [], []
    for actual in actuals:
        got = softmax(actual)
        gaps.append(float(np.abs(want - got).max()))
        agreements.append(float(np.mean(want.argmax(1) == got.argmax(1))))
    agreement, gap, n = min(agreements), max(gaps), len(expected)
    if agreement < MIN_AGREEMENT:
        raise ExportError(
            f"ONNX gives another label than PyTorch fp32 for {1 - agreement:.1%} of {n} "
            f"{items} (at most {1 - MIN_AGREEMENT:.1%} may differ). " + _what_to_do(n)
        )
    if gap > tolerance:
        raise ExportError(
            f"ONNX disagrees with PyTorch fp32 on {n} {items}: "
            f"max probability difference {gap:.2e} (tolerance {tolerance:.0e})"
        )
    return Parity(tolerance=tolerance, max_abs_diff=gap, agreement=agreement, items=n, measure="probability")


def _what_to_do(n: int) -> str:
    """Advice for a failed agreement check: too few items to measure 0.5 %, or a real difference."""
    least = round(1 / (1 - MIN_AGREEMENT))
    if n < least:
        return (
            f"With {n} items one difference is {1 / n:.1%}: check at least {least} (--parity-items {least})."
        )
    return (
        "fp16 rounding alone changes only answers that sit on a tie between classes; this many "
        "points to an operator the ONNX export changed, not to rounding."
    )
