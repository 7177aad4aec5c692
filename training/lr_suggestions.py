"""Rules that read a learning-rate sweep and suggest a rate, as fastai's `lr_find` offers them.

A sweep's first points are noise (the smoothed loss has seen a handful of batches, and the rate is
too small to move anything) and its last points are divergence, so every rule reads the sweep
without its first tenth and its last few points. What is left is a curve that is flat, then falls,
then turns up; the rules differ in where on the fall they point:

- `valley` (the default): along the longest stretch over which the loss keeps falling, the rate
  where it has made half its fall. Robust where a single steep step in the noise would fool
  `steep`. fastai takes that stretch's middle by index instead, which moves with `--start-lr`
  (a longer plateau pulls it left, to rates that barely train); half the fall does not.
- `steep`: where the loss falls fastest against log(rate).
- `minimum`: a tenth of the rate with the lowest loss (past it, training is too fast).
- `slide`: the rate where the curve, read from its divergent end back, turns flat again.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DEFAULT_RULE", "RULES", "minimum", "slide", "steep", "suggest", "trimmed", "valley"]

Rule = Callable[[np.ndarray, np.ndarray], float]
"""(rates, smoothed losses), trimmed → a rate."""

SKIP_END = 5
"""Points dropped at the divergent end of a sweep."""
MIN_POINTS = 8
"""Fewer points than this after trimming: read the whole sweep instead (a very short sweep)."""


def trimmed(lrs: list[float], losses: list[float], num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """The sweep without its noisy first tenth (of the `num_it` planned) and its last `SKIP_END`
    points, or whole where that would leave too little to read."""
    if len(lrs) != len(losses) or len(lrs) < 3:
        raise ValueError(f"a sweep needs at least 3 (rate, loss) points, got {len(lrs)} and {len(losses)}")
    rates, values = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    start, end = num_it // 10, len(lrs) - SKIP_END
    if end - start < MIN_POINTS:
        return rates, values
    return rates[start:end], values[start:end]


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest against log(rate)."""
    slopes = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the rate with the lowest loss."""
    return float(lrs[int(np.argmin(losses))] / 10)


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The first rate where the loss has made half its fall along the longest decreasing run of
    losses (not necessarily adjacent points: the longest decreasing subsequence, so one noisy step
    neither starts nor ends it)."""
    n = len(losses)
    length = np.ones(n, dtype=np.int64)  # longest decreasing subsequence ending at i
    previous = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i], previous[i] = length[j] + 1, j
    end = int(np.argmax(length))
    start = end
    while previous[start] >= 0:
        start = int(previous[start])
    halfway = (losses[start] + losses[end]) / 2
    return float(lrs[start + int(np.argmax(losses[start : end + 1] <= halfway))])


def slide(lrs: np.ndarray, losses: np.ndarray, window: int = 15, flat: float = 0.01) -> float:
    """Walk a window of `window` points back from the divergent end while the loss's slope differs
    between its two ends by more than `flat` of the loss's range: the window's left end when the
    curve has turned flat again (fastai's interval slide rule)."""
    window = min(window, len(losses) - 1)
    slopes = np.gradient(losses)
    limit = flat * max(float(losses.max() - losses.min()), 1e-12)
    right = len(losses) - 1
    while right - window > 0 and abs(slopes[right] - slopes[right - window]) > limit:
        right -= 1
    return float(lrs[right - window])


RULES: dict[str, Rule] = {"valley": valley, "steep": steep, "minimum": minimum, "slide": slide}
DEFAULT_RULE = "valley"


def suggest(lrs: list[float], losses: list[float], num_it: int) -> dict[str, float]:
    """Every rule's rate for one sweep, read without its noisy start and divergent end."""
    rates, values = trimmed(lrs, losses, num_it)
    return {name: rule(rates, values) for name, rule in RULES.items()}
