"""torch.compile as a callback: the module the loop trains is compiled at the start of a fit (after
DDP has wrapped it under torchrun), once; validation, checkpoints and export use the plain module."""

from __future__ import annotations

import torch
from torch import nn

from training.callbacks.core import Callback, Fit

__all__ = ["Compile"]


class Compile(Callback):
    """Train through `torch.compile(learn.trained, backend=backend)`; a later fit reuses the compiled
    module (and its compiled code) unless something has replaced `learn.trained` since."""

    order = 40  # after DistributedTraining: DDP's wrapper is compiled, not wrapped around compiled code
    shapes_the_step = True

    def __init__(self, backend: str = "inductor") -> None:
        self.backend = backend
        self.compiled: nn.Module | None = None

    def before_fit(self, fit: Fit) -> None:
        learn = fit.learn
        if learn.trained is not self.compiled:
            compiled: nn.Module = torch.compile(learn.trained, backend=self.backend)  # type: ignore[assignment]
            learn.trained = self.compiled = compiled
