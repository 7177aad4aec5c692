"""The learner's callbacks: the seam (`Callback`, `Fit`, `Events`) and the ones every learner can use.

Checkpoints and resume live in `training.checkpoint`, DDP under torchrun in `training.distributed`,
the learning-rate sweep in `training.lr_finder`: each beside the rest of its idea.
"""

from training.callbacks.compiled import Compile
from training.callbacks.core import EVENTS, Callback, CancelFit, Event, Events, Fit
from training.callbacks.precision import MixedPrecision
from training.callbacks.report import EpochRecord, Reporter, ReportProgress

__all__ = [
    "EVENTS",
    "Callback",
    "CancelFit",
    "Compile",
    "EpochRecord",
    "Event",
    "Events",
    "Fit",
    "MixedPrecision",
    "ReportProgress",
    "Reporter",
]
