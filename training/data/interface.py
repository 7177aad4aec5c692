"""What the `Learner` needs from its data, and nothing more: an image `DataBunch` and a
`TextDataBunch` both fit, so neither has to pretend to be the other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from training.distributed import Ranks

__all__ = ["Batch", "Loader", "TrainingData"]

Batch = tuple[torch.Tensor, torch.Tensor]


class Loader(Protocol):
    """Batches already on the device; `set_epoch` makes epoch n's order the same, fresh or resumed."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...

    def set_epoch(self, epoch: int) -> None: ...


class TrainingData(Protocol):
    """Train and valid loaders on one device; `ranks` under torchrun (None when run alone)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def train_dl(self) -> Loader: ...

    @property
    def valid_dl(self) -> Loader: ...

    @property
    def ranks(self) -> Ranks | None: ...
