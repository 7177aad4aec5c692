"""Running a batch of texts in groups of similar length, so short texts do not pay for long ones.

The dynamic batcher collects whatever texts arrive together; padding them all to the longest would
make a 10-token tweet cost as much as a 1,000-token review. Sorted by length and cut wherever the
longest would exceed `max_ratio` × the shortest, each group pads to its own longest: at most half of
any group is padding (at the default 2), and the answers come back in the original order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["length_groups", "pad_ids", "run_by_length"]


def length_groups(lengths: Sequence[int], max_ratio: float = 2.0) -> list[list[int]]:
    """Indices grouped by length, shortest first; in a group the longest ≤ `max_ratio` × the shortest."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and lengths[index] <= max_ratio * lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def run_by_length(items: Sequence[np.ndarray], run: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """`run` on padded groups of `items` (token id rows); one output row per item, in order."""
    rows: list[np.ndarray] = [np.empty(0)] * len(items)
    for group in length_groups([len(item) for item in items]):
        for index, row in zip(group, run(pad_ids([items[i] for i in group])), strict=True):
            rows[index] = row
    return rows


def pad_ids(items: Sequence[np.ndarray]) -> np.ndarray:
    """Token id rows → (N, longest) int64, padded on the right with 0 (`PAD`)."""
    batch = np.zeros((len(items), max(len(item) for item in items)), dtype=np.int64)
    for row, item in zip(batch, items, strict=True):
        row[: len(item)] = item
    return batch
