"""What a fit tells the outside world: a `Reporter` (the CLI draws rich progress bars and a table)
hears of each fit, batch and epoch through the `ReportProgress` callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from training.callbacks.core import Callback, Fit

__all__ = ["EpochRecord", "ReportProgress", "Reporter"]


@dataclass
class EpochRecord:
    """One row of the training table."""

    epoch: int
    train_loss: float
    valid_loss: float
    metrics: dict[str, float]
    seconds: float


class Reporter(Protocol):
    """What the loop tells the outside world; the CLI draws rich progress bars and a table."""

    def fit_begin(self, epochs: int, start_epoch: int, batches: int) -> None: ...

    def batch_end(self, loss: torch.Tensor) -> None:
        """After each training batch; `loss` is still on the device (reading it waits for it)."""

    def epoch_end(self, record: EpochRecord) -> None: ...

    def fit_end(self) -> None: ...


class ReportProgress(Callback):
    """Tells the learner's `reporter` (if it has one): last in line, so a batch is reported before
    the scheduler moves on (it sees the batch's rates) and an epoch after its checkpoint is written."""

    order = 90

    def __init__(self) -> None:
        self.reporting: Reporter | None = None  # the reporter told of this fit's beginning

    def before_fit(self, fit: Fit) -> None:
        self.reporting = fit.learn.reporter
        if self.reporting is not None:
            self.reporting.fit_begin(fit.epochs, fit.start_epoch, len(fit.learn.data.train_dl))

    def after_batch(self, fit: Fit) -> None:
        if self.reporting is not None:
            self.reporting.batch_end(fit.loss)

    def after_epoch(self, fit: Fit) -> None:
        if self.reporting is not None and fit.validates:
            self.reporting.epoch_end(fit.learn.history[-1])

    def after_fit(self, fit: Fit) -> None:
        if self.reporting is not None:
            self.reporting.fit_end()
        self.reporting = None
