"""Fitting the n-gram branch (`serving.bundle.networks.ngrams`): naive-Bayes ratios counted on the
training texts, then the logistic regression on top solved to its optimum, its L2 strength `C`
chosen by k-fold cross-validation on the training texts only (as scikit-learn's
`LogisticRegressionCV` does for the TF-IDF baseline).

Why not SGD epochs like the other stages: the problem is convex, with ~200,000 features and a
thousand texts. Adam moves a feature seen once as far as one seen a hundred times, so epochs overfit
the rare ones (0.850–0.857 on the reviews, with weight decay 0.01 or 0.3); L-BFGS on the penalized
objective finds the one optimum in about 2 seconds (0.870), and cross-validation picks the penalty
without looking at the validation texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from serving.bundle.networks.ngrams import NgramClassifier

__all__ = ["C_GRID", "NgramFit", "fit_ngram_branch", "text_features"]

C_GRID = (1.0, 10.0, 100.0)
"""Inverse L2 strengths tried, as scikit-learn's C: the loss summed over texts against ½‖w‖². On the
reviews, 5-fold accuracy was flat from 0.1 to 100 (0.858–0.865), so three decades suffice."""


@dataclass(frozen=True)
class NgramFit:
    c: float
    cv_accuracy: dict[float, float]
    """Mean held-out accuracy of each C over the folds."""
    train_loss: float
    """Cross-entropy on the training texts, without the penalty."""


@torch.no_grad()
def text_features(
    model: NgramClassifier, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every text's feature ids (N, F), padded with 0, and its labels (N,)."""
    rows, labels = [], []
    for tokens, targets in batches:
        rows += list(model.features(tokens).cpu())
        labels.append(targets.cpu())
    return nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.cat(labels)


def count_features(model: NgramClassifier, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(classes, features): how many of each class's texts hold each feature."""
    counts = torch.zeros(model.spec.n_classes, model.spec.features)
    for label in labels.unique():
        rows = features[labels == label].flatten()
        counts[label].index_add_(0, rows, torch.ones_like(rows, dtype=counts.dtype))
    return counts


def fit_weights(model: NgramClassifier, features: torch.Tensor, labels: torch.Tensor, c: float) -> float:
    """The penalized logistic regression's optimum over the features these texts hold (the rest
    keep weight 0), by L-BFGS; the model's ratios must already be set."""
    used, local = torch.unique(features, return_inverse=True)
    ratio = model.ratio.detach().cpu()[used]  # padding's (feature 0) is 0: see `set_ratios`
    weight = torch.zeros(len(used), model.spec.n_classes, requires_grad=True)
    bias = torch.zeros(model.spec.n_classes, requires_grad=True)
    scaled = ratio[local]  # (N, F, classes)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1, max_iter=500, history_size=10, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = (weight[local] * scaled).sum(1) + bias
        loss = nn.functional.cross_entropy(logits, labels) + weight.pow(2).sum() / (2 * c * len(labels))
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        logits = (weight[local] * scaled).sum(1) + bias
        loss = float(nn.functional.cross_entropy(logits, labels))
        table = torch.zeros_like(model.weight.weight, device="cpu")
        table[used] = weight.detach()
        model.weight.weight.copy_(table)
        model.bias.copy_(bias.detach())
    return loss


@torch.no_grad()
def accuracy_of(model: NgramClassifier, features: torch.Tensor, labels: torch.Tensor) -> float:
    logits = model.logits(features.to(model.bias.device)).cpu()
    return float((logits.argmax(1) == labels).float().mean())


def fit_ngram_branch(
    model: NgramClassifier,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    folds: int = 5,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
) -> NgramFit:
    """Ratios and weights from the training `batches`, with C chosen by `folds`-fold cross-validation
    (each fold's ratios counted without its held-out texts); the model is left fitted on them all."""
    features, labels = text_features(model, batches)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    scores: dict[float, list[float]] = {c: [] for c in grid}
    for fold in range(folds):
        held = torch.zeros(len(labels), dtype=torch.bool)
        held[order[fold::folds]] = True
        model.set_ratios(count_features(model, features[~held], labels[~held]).to(model.ratio.device))
        for c in grid:
            fit_weights(model, features[~held], labels[~held], c)
            scores[c].append(accuracy_of(model, features[held], labels[held]))
    mean = {c: sum(s) / len(s) for c, s in scores.items()}
    best = max(grid, key=lambda c: (round(mean[c], 6), -c))  # ties: the stronger penalty
    model.set_ratios(count_features(model, features, labels).to(model.ratio.device))
    return NgramFit(best, mean, fit_weights(model, features, labels, best))
