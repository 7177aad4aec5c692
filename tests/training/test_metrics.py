from __future__ import annotations

from functools import partial

import pytest
import torch

from training.metrics import (
    accuracy,
    accuracy_thresh,
    constant_baseline,
    fbeta,
    mean_iou,
    metric_name,
    per_label_report,
    pixel_accuracy,
)

LOGIT = 10.0  # sigmoid(10) ≈ 1, sigmoid(-10) ≈ 0


def test_accuracy_thresh_counts_every_label_decision() -> None:
    preds = torch.tensor([[LOGIT, -LOGIT, LOGIT], [-LOGIT, -LOGIT, LOGIT]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert float(accuracy_thresh(preds, targets)) == pytest.approx(5 / 6)


def test_fbeta_weighs_recall_more_than_precision() -> None:
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    over = torch.tensor([[LOGIT, LOGIT, LOGIT, LOGIT]])  # recall 1, precision 1/2
    under = torch.tensor([[LOGIT, -LOGIT, -LOGIT, -LOGIT]])  # recall 1/2, precision 1
    assert float(fbeta(over, targets, beta=2)) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1), rel=1e-4)
    assert float(fbeta(over, targets, beta=2)) > float(fbeta(under, targets, beta=2))
    assert float(fbeta(targets * 2 * LOGIT - LOGIT, targets)) == pytest.approx(1.0, rel=1e-4)


def test_fbeta_threshold_is_bound_with_partial() -> None:
    preds = torch.logit(torch.tensor([[0.3, 0.1]]))
    targets = torch.tensor([[1.0, 0.0]])
    assert float(partial(fbeta, thresh=0.2)(preds, targets)) == pytest.approx(1.0, rel=1e-4)
    assert float(partial(fbeta, thresh=0.5)(preds, targets)) == 0.0


def test_metric_names_see_through_partial() -> None:
    assert metric_name(partial(partial(fbeta, beta=2), thresh=0.2)) == "fbeta"
    assert metric_name(accuracy) == "accuracy"


def test_constant_baseline_predicts_the_frequent_tags_for_everyone() -> None:
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])  # tag 0 always, tag 1 a quarter
    valid = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # At thresh 0.2 both tags (freq 1.0 and 0.25) are predicted for every item.
    expected = float(fbeta(torch.full((2, 2), LOGIT), valid))
    assert constant_baseline(train, valid, partial(fbeta, thresh=0.2)) == pytest.approx(expected, rel=1e-4)
    assert constant_baseline(train, valid, partial(fbeta, thresh=0.5)) == pytest.approx(
        float(fbeta(torch.tensor([[LOGIT, -LOGIT]] * 2), valid)), rel=1e-4
    )


def test_pixel_accuracy_and_mean_iou_leave_void_out() -> None:
    targets = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 2]]])  # code 2 is Void
    predicted = torch.tensor([[[0, 1, 1, 1], [0, 1, 0, 1]]])  # Void pixels predicted anything
    logits = torch.nn.functional.one_hot(predicted, 3).permute(0, 3, 1, 2).float()
    assert float(pixel_accuracy(logits, targets, void=2)) == pytest.approx(3 / 4)
    assert float(pixel_accuracy(logits, targets)) == pytest.approx(3 / 8)
    # class 0: TP 1 over union 1 (pred) + 1 (miss) → 1/2; class 1: TP 2 over union 3 → 2/3
    assert float(mean_iou(logits, targets, void=2)) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_a_perfect_segmentation_scores_one() -> None:
    targets = torch.randint(0, 4, (2, 8, 8))
    logits = torch.nn.functional.one_hot(targets, 4).permute(0, 3, 1, 2).float()
    assert (
        float(pixel_accuracy(logits, targets, void=3)) == 1.0
        and float(mean_iou(logits, targets, void=3)) == 1.0
    )


def test_per_label_report_says_which_tag_is_learnt_and_which_is_guessed() -> None:
    targets = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=torch.float32)
    said = torch.tensor([[1, 1], [1, 1], [0, 1], [0, 1]], dtype=torch.float32)  # tag b: always said
    report = per_label_report(said * 2 * LOGIT - LOGIT, targets, ["a", "b"], thresh=0.5)
    assert report["a"] == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "support": 2}
    assert report["b"] == {"accuracy": 0.5, "precision": 0.5, "recall": 1.0, "support": 2}
