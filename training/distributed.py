"""Data-parallel training on an existing engine: torch's DistributedDataParallel, started by torchrun.

    torchrun --nproc-per-node 2 -m training train multilabel --data data/scenes ...

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; the run joins a process group (gloo on CPU, nccl on CUDA),
each rank trains on its own shard (DistributedSampler), gradients are averaged by DDP, validation
predictions are gathered so every rank computes the same metrics over the whole validation set, and
only rank 0 writes checkpoints, plots, metrics and progress. Nothing here is home-made distribution.
The learner meets torchrun through one callback, `DistributedTraining`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as dist

from training.callbacks.core import Callback, Fit

__all__ = ["DistributedTraining", "Ranks", "current_ranks", "gather_in_order", "join"]


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_ranks() -> Ranks | None:
    """This process's place in a torchrun launch; None when it runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def join(ranks: Ranks) -> torch.device:
    """Join the process group (once) and return this rank's device."""
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def gather_in_order(local: torch.Tensor, total: int, ranks: Ranks) -> torch.Tensor:
    """Rows sharded by an unshuffled DistributedSampler (rank r holds items r, r+W, r+2W, ...,
    padded to equal counts) → all `total` rows in dataset order, on every rank."""
    parts = [torch.empty_like(local) for _ in range(ranks.world_size)]
    dist.all_gather(parts, local.contiguous())
    interleaved = torch.stack(parts, dim=1)  # (rows per rank, world, ...)
    return interleaved.reshape(-1, *local.shape[1:])[:total]


class DistributedTraining(Callback):
    """Under torchrun (the learner's data has `ranks`): train through DDP, and make the epoch's
    training loss the mean over every rank's items. Alone, it does nothing."""

    order = 30  # after a resume's freeze_to: DDP must see the final trainable set

    def before_fit(self, fit: Fit) -> None:
        """Wrapped per fit, after freezing: DDP syncs the gradients of the parameters that require
        them when it is built, and frozen ones must not be waited for."""
        learn = fit.learn
        if learn.data.ranks is None:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [learn.device.index] if learn.device.type == "cuda" else None
        learn.trained = DistributedDataParallel(learn.model, device_ids=device_ids)

    def after_train(self, fit: Fit) -> None:
        if fit.learn.data.ranks is None:
            return
        sums = torch.stack([fit.loss_sum.float(), torch.tensor(float(fit.items), device=fit.loss_sum.device)])
        dist.all_reduce(sums)
        fit.loss_sum, fit.items = sums[0], int(sums[1])
