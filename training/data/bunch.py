"""The loaders: a `DataBunch` of train/valid/test loaders that yield normalized batches on a device.

Workers decode and augment uint8 images (4× less to copy than floats); conversion to float and
normalization run on whole batches on the device, where they cost almost nothing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from serving.bundle.images import normalize_pixels, unit_pixels
from serving.bundle.networks.bodies import IMAGENET_STATS, Stats
from training.data.batch_transforms import BatchAugment
from training.data.datasets import ImageDataset
from training.data.transforms import sized
from training.distributed import Ranks

if TYPE_CHECKING:
    from training.data.block import LabelledData

__all__ = ["DataBunch", "DeviceLoader", "Stats", "imagenet_stats"]

imagenet_stats: Stats = IMAGENET_STATS
Batch = tuple[torch.Tensor, torch.Tensor]


def default_workers() -> int:
    """Leave a core to the training loop itself: on 2 cores, one loader worker keeps up."""
    return min(4, max(0, (os.cpu_count() or 1) - 1))


class DeviceLoader:
    """A DataLoader whose batches arrive on `device`, as normalized float images.

    `set_epoch(n)` reseeds shuffling and augmentation, so epoch n draws the same batches
    whether the run is fresh or resumed after a crash.
    """

    def __init__(
        self, dl: DataLoader[tuple[torch.Tensor, torch.Tensor]], device: torch.device, seed: int | None
    ) -> None:
        self.dl, self.device, self.seed = dl, device, seed
        self.stats: Stats | None = None
        self.channels_last = False
        self.batch_tfm: BatchAugment | None = None  # training only: augment whole batches here
        self._augment_rng = torch.Generator(device=device).manual_seed(seed or 0)

    def __len__(self) -> int:
        return len(self.dl)

    def set_epoch(self, epoch: int) -> None:
        if self.seed is not None and self.dl.generator is not None:
            self.dl.generator.manual_seed(self.seed * 100_003 + epoch)
            self._augment_rng.manual_seed(self.seed * 100_003 + epoch)
        if isinstance(self.dl.sampler, DistributedSampler):
            self.dl.sampler.set_epoch(epoch)  # each rank's shard of epoch n, the same on a resume

    def set_stats(self, stats: Stats) -> None:
        self.stats = stats

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch → normalized float on the device (serving's `scale_pixels`)."""
        return self._normalized(unit_pixels(x.to(self.device, non_blocking=True)))

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is not None:
            x = normalize_pixels(x, *self.stats)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self._batches():
            y = y.to(self.device, non_blocking=True)
            if self.batch_tfm is None:
                yield self.prepare(x), y
                continue
            x = unit_pixels(x.to(self.device, non_blocking=True))
            x, y = self.batch_tfm(x, y, self._augment_rng)
            yield self._normalized(x), y

    def _batches(self) -> Iterator[Batch]:
        """Workers seed augmentation from the loader's generator; in-process loading would draw
        from the global RNG instead, so each batch is made under a forked RNG seeded from ours."""
        batches = iter(self.dl)
        if self.dl.num_workers > 0 or self.dl.generator is None:
            yield from batches
            return
        base = int(torch.randint(2**62, (), generator=self.dl.generator))
        for i in itertools.count():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(base + i)
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    def raw(self) -> Iterator[Batch]:
        """Batches as the workers made them: uint8 images, targets on the CPU."""
        yield from self.dl


class DataBunch:
    """Train, valid and (optional) test loaders over one `LabelledData`."""

    def __init__(
        self,
        src: LabelledData,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        ranks: Ranks | None = None,
    ) -> None:
        """With `ranks` (a torchrun launch), each rank loads its own shard of every split."""
        self.src, self.bs, self.ranks = src, bs, ranks
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        workers = default_workers() if num_workers is None else num_workers
        train_ds, valid_ds, test_ds = src.datasets()
        pin = self.device.type == "cuda"

        def loader(ds: Dataset[Batch], shuffle: bool, batch: int) -> DataLoader[Batch]:
            sampler: DistributedSampler[Batch] | None = None
            if ranks is not None:
                sampler = DistributedSampler(
                    ds, ranks.world_size, ranks.rank, shuffle=shuffle, seed=seed, drop_last=shuffle
                )
            return DataLoader(
                ds,
                batch_size=batch,
                shuffle=shuffle and sampler is None,
                sampler=sampler,
                drop_last=shuffle and len(ds) > batch * (ranks.world_size if ranks else 1),  # type: ignore[arg-type]
                num_workers=workers,
                pin_memory=pin,
                generator=torch.Generator().manual_seed(seed),
            )

        self.train_dl = DeviceLoader(loader(train_ds, True, bs), self.device, seed)
        self.valid_dl = DeviceLoader(loader(valid_ds, False, bs * 2), self.device, None)
        self.test_dl = (
            None if test_ds is None else DeviceLoader(loader(test_ds, False, bs * 2), self.device, None)
        )

    @property
    def classes(self) -> list[str]:
        return self.src.classes

    @property
    def size(self) -> int:
        return self.src.size

    @property
    def stats(self) -> Stats | None:
        return self.train_dl.stats

    def loaders(self) -> list[DeviceLoader]:
        return [dl for dl in (self.train_dl, self.valid_dl, self.test_dl) if dl is not None]

    def normalize(self, stats: Stats | None = None, n_images: int = 512) -> DataBunch:
        """Normalize every loader with `stats`, or with stats of up to `n_images` training images."""
        stats = stats or self.compute_stats(n_images)
        for dl in self.loaders():
            dl.set_stats(stats)
        return self

    def compute_stats(self, n_images: int = 512) -> Stats:
        """Per-channel mean and std over a sample of training images, without augmentation."""
        unaugmented = ImageDataset(self.src.train, self.src.y_train, sized(self.src.tfms[1], self.size))
        probe = DataLoader(
            unaugmented,
            batch_size=self.bs,
            shuffle=True,
            num_workers=self.train_dl.dl.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        count = 0
        for x, _ in probe:
            pixels = x.double().div(255).transpose(0, 1).reshape(x.shape[1], -1)
            total += pixels.sum(1)
            squares += pixels.pow(2).sum(1)
            count += pixels.shape[1]
            if count >= n_images * x.shape[2] * x.shape[3]:
                break
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(1e-12).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    def to_channels_last(self) -> DataBunch:
        for dl in self.loaders():
            dl.channels_last = True
        return self
