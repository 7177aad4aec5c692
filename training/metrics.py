"""Metrics: plain functions of (predictions, targets) over the whole validation set.

Fix their arguments with `functools.partial(fbeta, beta=2, thresh=0.2)`; `metric_name` gives the
column name a table shows for either form.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = [
    "Metric",
    "accuracy",
    "accuracy_thresh",
    "background_logits",
    "constant_baseline",
    "fbeta",
    "frequency_logits",
    "mean_iou",
    "mean_pixel_error",
    "mean_points",
    "metric_name",
    "per_label_report",
    "pixel_accuracy",
]

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy_thresh(
    preds: torch.Tensor, targets: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """Share of (item, label) decisions right when a label is on above `thresh` (multi-label)."""
    scores = preds.sigmoid() if sigmoid else preds
    return ((scores > thresh) == targets.bool()).float().mean()


def fbeta(
    preds: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 2.0,
    thresh: float = 0.2,
    sigmoid: bool = True,
    eps: float = 1e-9,
) -> torch.Tensor:
    """F-beta per item, averaged over items (Planet's score: beta=2 weighs recall over precision)."""
    scores = preds.sigmoid() if sigmoid else preds
    predicted = (scores > thresh).float()
    actual = targets.float()
    true_pos = (predicted * actual).sum(1)
    precision = true_pos / (predicted.sum(1) + eps)
    recall = true_pos / (actual.sum(1) + eps)
    b2 = beta * beta
    return ((1 + b2) * precision * recall / (b2 * precision + recall + eps)).mean()


def per_label_report(
    preds: torch.Tensor, targets: torch.Tensor, classes: list[str], thresh: float = 0.2, sigmoid: bool = True
) -> dict[str, dict[str, float]]:
    """Each label's accuracy, precision, recall and support (validation items that have it) at
    `thresh`: which tags a multi-label model has learnt and which it guesses, which the averaged
    scores hide."""
    scores = preds.sigmoid() if sigmoid else preds
    predicted, actual = scores > thresh, targets.bool()
    hits = (predicted & actual).sum(0).float()
    report = {}
    for i, label in enumerate(classes):
        said, has = int(predicted[:, i].sum()), int(actual[:, i].sum())
        report[label] = {
            "accuracy": round(float((predicted[:, i] == actual[:, i]).float().mean()), 4),
            "precision": round(float(hits[i]) / said, 4) if said else 0.0,
            "recall": round(float(hits[i]) / has, 4) if has else 0.0,
            "support": has,
        }
    return report


def accuracy(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of items whose highest-scoring class is the target (single-label)."""
    return (preds.argmax(dim=-1) == targets).float().mean()


def pixel_accuracy(preds: torch.Tensor, targets: torch.Tensor, void: int | None = None) -> torch.Tensor:
    """Share of pixels whose argmax class is the target's, `void` pixels left out (CamVid's acc)."""
    predicted, targets = preds.argmax(dim=1), targets.long()
    keep = torch.ones_like(targets, dtype=torch.bool) if void is None else targets != void
    return (predicted[keep] == targets[keep]).float().mean()


def mean_iou(preds: torch.Tensor, targets: torch.Tensor, void: int | None = None) -> torch.Tensor:
    """Intersection over union per class, averaged over the classes present in prediction or target
    (`void` excluded as a class and as pixels)."""
    n_classes = preds.shape[1]
    predicted, targets = preds.argmax(dim=1), targets.long()
    keep = torch.ones_like(targets, dtype=torch.bool) if void is None else targets != void
    predicted, targets = predicted[keep], targets[keep]
    ious = []
    for cls in range(n_classes):
        if cls == void:
            continue
        pred_c, true_c = predicted == cls, targets == cls
        union = (pred_c | true_c).sum()
        if union > 0:
            ious.append((pred_c & true_c).sum().float() / union)
    return torch.stack(ious).mean() if ious else torch.tensor(float("nan"))


def mean_pixel_error(preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Mean distance between predicted and true points, in pixels of each item's original image.

    Points are (N, 2K) in [-1, 1]; `sizes` holds each item's (height, width), in the same order.
    """
    if len(sizes) != len(preds):
        raise ValueError(f"{len(preds)} predictions but {len(sizes)} image sizes")
    half_extent = sizes.flip(1).to(preds).unsqueeze(1) / 2  # (N, 1, 2): half of (width, height)
    gaps = (preds - targets).reshape(len(preds), -1, 2) * half_extent
    return gaps.norm(dim=-1).mean()


def metric_name(metric: Callable[..., torch.Tensor]) -> str:
    """`fbeta` for both `fbeta` and `partial(fbeta, beta=2)`."""
    while isinstance(metric, functools.partial):
        metric = metric.func
    return getattr(metric, "__name__", type(metric).__name__)


def constant_baseline(train_targets: torch.Tensor, valid_targets: torch.Tensor, metric: Metric) -> float:
    """`metric` for a model that ignores the image and scores every label by its training frequency.

    For multi-label data thresholded metrics then predict "the frequent tags" for every item:
    the trivial baseline a trained model must clearly beat.
    """
    return float(metric(frequency_logits(train_targets, valid_targets), valid_targets))


def frequency_logits(train_targets: torch.Tensor, valid_targets: torch.Tensor) -> torch.Tensor:
    """Every validation item scored with each label's training frequency (as logits)."""
    freq = train_targets.float().mean(0).clamp(1e-6, 1 - 1e-6)
    return torch.logit(freq).expand_as(valid_targets)


def background_logits(n_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A segmenter that calls every pixel code 0 (background): the baseline a U-Net must beat."""

    def predict(train_targets: torch.Tensor, valid_targets: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(valid_targets), n_classes, *valid_targets.shape[1:])
        logits[:, 0] = 1.0
        return logits

    return predict


def mean_points(train_targets: torch.Tensor, valid_targets: torch.Tensor) -> torch.Tensor:
    """Every validation item given the training set's mean point positions."""
    return train_targets.float().mean(0).expand_as(valid_targets)
