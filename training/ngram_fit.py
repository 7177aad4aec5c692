"""Fitting a bag of n-grams (`serving.bundle.networks.ngrams`) as NB-LR with interpolation (Wang &
Manning 2012, "Baselines and Bigrams", with logistic regression for the SVM): each feature's
naive-Bayes log-count ratio, counted on the training texts, scales that feature; a logistic regression
on the scaled features is solved to its optimum; its weights are then pulled towards their mean
magnitude by β (β = 1 keeps them; below 1 mixes in multinomial naive Bayes, which is what helps on
short texts). The network keeps only the product, weight × ratio, one table.

The L2 strength `C` and β are chosen together by k-fold cross-validation on the training texts only
(each fold's ratios counted without its held-out texts), as scikit-learn's `LogisticRegressionCV`
chooses C for the TF-IDF baseline; the validation texts are never looked at.

Why not SGD epochs like the other stages: the problem is convex, with ~10^6 features and a few
thousand texts. Adam moves a feature seen once as far as one seen a hundred times, so epochs overfit
the rare ones (0.850–0.857 on the reviews); L-BFGS on the penalized objective finds the one optimum in
seconds, and β costs no refit: every β of one C is scored on the same solution.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from serving.bundle.networks.ngrams import NgramClassifier

__all__ = [
    "BETAS",
    "C_GRID",
    "NgramFit",
    "SparseTexts",
    "fit_ngram_branch",
    "naive_bayes_ratios",
    "solve",
    "text_features",
]

C_GRID = (0.1, 1.0, 10.0, 100.0)
"""Inverse L2 strengths tried, as scikit-learn's C: the loss summed over texts against ½‖w‖². Long
reviews chose 10, short sentences 0.1 to 10, depending on the split."""
BETAS = (0.25, 0.5, 1.0)
"""Interpolations tried (Wang & Manning's grid): 1 is the plain NB-LR."""


@dataclass(frozen=True)
class NgramFit:
    c: float
    beta: float
    cv_accuracy: dict[str, float]
    """Mean held-out accuracy over the folds, per "C=…,beta=…"."""
    train_loss: float
    """Cross-entropy on the training texts of the fitted table, without the penalty."""


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


def naive_bayes_ratios(features: torch.Tensor, labels: torch.Tensor, size: int, classes: int) -> torch.Tensor:
    """(size, classes): for each feature and class, the log of how much likelier the feature is in
    that class's texts than in the others' (texts holding it, add-one smoothed over the features
    these texts hold). A feature they never hold, and padding (0), get 0: no evidence, no weight."""
    counts = torch.zeros(classes, size)
    for label in labels.unique():
        rows = features[labels == label].flatten()
        counts[label].index_add_(0, rows, torch.ones_like(rows, dtype=counts.dtype))
    seen = counts.sum(0) > 0
    seen[0] = False
    inside = (counts + 1) * seen
    outside = (counts.sum(0, keepdim=True) - counts + 1) * seen
    rate_in = inside / inside.sum(1, keepdim=True)
    rate_out = outside / outside.sum(1, keepdim=True)
    ratio = torch.where(seen, rate_in.clamp_min(1e-30).log() - rate_out.clamp_min(1e-30).log(), 0.0)
    return ratio.T.contiguous()


@dataclass(frozen=True)
class _Solution:
    used: torch.Tensor
    """The feature ids the training texts hold (0 among them)."""
    weight: torch.Tensor
    """(len(used), classes): the logistic regression's weights on the ratio-scaled features."""
    bias: torch.Tensor

    def table(self, ratio: torch.Tensor, beta: float, size: int) -> torch.Tensor:
        """(size, classes): each feature's row, interpolated weight × ratio (0 where unused)."""
        held = self.used != 0
        mean = self.weight[held].abs().mean(0, keepdim=True) if held.any() else torch.zeros(1)
        table = torch.zeros(size, self.weight.shape[1])
        table[self.used] = ((1 - beta) * mean + beta * self.weight) * ratio[self.used]
        return table


class _SparseProduct(torch.autograd.Function):
    """`matrix @ dense` with its gradient by the transposed matrix, both compressed-row: torch's own
    sparse product differentiates through coordinate lists, about 18× slower on the reviews."""

    @staticmethod
    def forward(
        ctx: Any, dense: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor
    ) -> torch.Tensor:
        ctx.transposed = transposed
        return matrix @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None


def _compressed(index: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A 0/1 compressed-row matrix with ones at `index` (2, nnz) (torch calls the layout beta: it
    says so once per process, and the gradient here is checked by the tests)."""
    with warnings.catch_warnings(), torch.sparse.check_sparse_tensor_invariants(enable=False):
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), shape).to_sparse_csr()


@dataclass(frozen=True)
class SparseTexts:
    """Texts as one sparse 0/1 (texts × features) matrix over the features they hold (and its
    transpose, for the gradient): a long review holds a thousand features, a short one ten, and
    padding them all to the longest cost 5× the time. Built once per training set, solved at each C."""

    used: torch.Tensor
    """The feature ids the texts hold (0 among them): the matrix's columns."""
    matrix: torch.Tensor
    transposed: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> SparseTexts:
        used, local = torch.unique(features, return_inverse=True)
        real = features != 0
        rows = torch.arange(len(features)).unsqueeze(1).expand_as(features)[real]
        index = torch.stack([rows, local[real]])
        matrix = _compressed(index, (len(features), len(used)))
        return cls(used, matrix, _compressed(index.flip(0), (len(used), len(features))))


def solve(texts: SparseTexts, labels: torch.Tensor, ratio: torch.Tensor, c: float) -> _Solution:
    """The penalized logistic regression's optimum over the features these texts hold (the rest
    keep weight 0), by L-BFGS."""
    used, matrix, transposed = texts.used, texts.matrix, texts.transposed
    scale = ratio[used]
    weight = torch.zeros(len(used), ratio.shape[1], requires_grad=True)
    bias = torch.zeros(ratio.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1, max_iter=500, history_size=10, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = _SparseProduct.apply(weight * scale, matrix, transposed) + bias
        loss = nn.functional.cross_entropy(logits, labels) + weight.pow(2).sum() / (2 * c * len(labels))
        loss.backward()
        return loss

    optimizer.step(objective)
    return _Solution(used, weight.detach(), bias.detach())


def predict(table: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return table[features].sum(1) + bias


def fit_ngram_branch(
    model: NgramClassifier,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    folds: int = 5,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
    betas: tuple[float, ...] = BETAS,
) -> NgramFit:
    """The model's table and bias from the training `batches`, with C and β chosen by `folds`-fold
    cross-validation; the model is left fitted on them all."""
    features, labels = text_features(model, batches)
    size, classes = model.spec.features, model.spec.n_classes
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    scores: dict[tuple[float, float], list[float]] = {(c, b): [] for c in grid for b in betas}
    for fold in range(folds):
        held = torch.zeros(len(labels), dtype=torch.bool)
        held[order[fold::folds]] = True
        ratio = naive_bayes_ratios(features[~held], labels[~held], size, classes)
        texts = SparseTexts.of(features[~held])
        for c in grid:
            solution = solve(texts, labels[~held], ratio, c)
            for beta in betas:
                logits = predict(solution.table(ratio, beta, size), solution.bias, features[held])
                scores[c, beta].append(float((logits.argmax(1) == labels[held]).float().mean()))
    mean = {key: sum(s) / len(s) for key, s in scores.items()}
    # ties: the stronger penalty, then the plainer model (β nearer 1)
    c, beta = max(mean, key=lambda key: (round(mean[key], 6), -key[0], key[1]))
    ratio = naive_bayes_ratios(features, labels, size, classes)
    solution = solve(SparseTexts.of(features), labels, ratio, c)
    table = solution.table(ratio, beta, size)
    model.set_table(table, solution.bias)
    loss = float(nn.functional.cross_entropy(predict(table, solution.bias, features), labels))
    cv = {f"C={key[0]:g},beta={key[1]:g}": round(value, 4) for key, value in mean.items()}
    return NgramFit(c, beta, cv, loss)
