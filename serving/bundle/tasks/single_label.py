"""One label out of many (text sentiment, image classes): softmax probabilities, the top label.

Shared by the tasks that answer so; each keeps its own module for what differs (its input, its call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.bundle.scores import softmax
from serving.bundle.tasks.base import ServedTask

__all__ = ["SingleLabelPostprocess", "SingleLabelTask"]


@dataclass(frozen=True)
class SingleLabelPostprocess:
    """Softmax over the classes; the answer is the most probable one."""

    labels: tuple[str, ...]

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs)

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The label and every class's probability per item (`sizes` do not matter)."""
        return [
            {
                "label": self.labels[int(row.argmax())],
                "scores": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
            }
            for row in self.probabilities(outputs)
        ]


class SingleLabelTask(ServedTask):
    postprocess = SingleLabelPostprocess
