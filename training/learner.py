"""The learner: a plain PyTorch training loop a reader can follow top to bottom.

Verbs, named for what the user means: `fit`, `fit_one_cycle`, `lr_find`, `freeze`, `freeze_to`,
`unfreeze`, `to_fp16`, `save`, `load`, `get_preds`. Layer groups (early body, late body, head)
carry discriminative learning rates: `max_lr=slice(1e-5, 1e-3)` spreads rates geometrically.

Each epoch of a fit given a `stage` ends with an atomic checkpoint of model, optimizer,
scheduler, epoch and history; `resume=True` continues a killed run from the last one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import distributed as dist
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from training.checkpoint import atomic_save, load_checkpoint
from training.data.block import ItemList
from training.data.bunch import DataBunch, DeviceLoader
from training.data.datasets import ImageDataset
from training.data.interface import Loader, TrainingData
from training.data.transforms import sized
from training.distributed import gather_in_order
from training.errors import ConfigError
from training.lr_finder import LRFind, lr_find
from training.lr_suggestions import DEFAULT_RULE
from training.metrics import Metric, metric_name

__all__ = ["EpochRecord", "Learner", "LossFunc", "Reporter"]

LossFunc = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_RESUME_MUST_MATCH = ("task", "spec", "classes", "size", "stats")  # what makes it the same model and data
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
D = TypeVar("D", bound=TrainingData)


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


@dataclass(frozen=True)
class _Plan:
    """What a fit was asked to do: a resumed run must be asked the same."""

    kind: str
    epochs: int
    lrs: tuple[float, ...]
    steps_per_epoch: int  # the schedule's length depends on it: a changed batch size is another fit


class Learner(Generic[D]):
    """Trains `model` on `data` with `loss_func`, reporting `metrics` on the validation set.

    `data` is anything with the loaders the loop uses (`TrainingData`): an image `DataBunch` or a
    `TextDataBunch`; `predict` reads image files and so needs a `DataBunch`."""

    def __init__(
        self,
        data: D,
        model: nn.Module,
        loss_func: LossFunc,
        metrics: Sequence[Metric] = (),
        layer_groups: Sequence[nn.Module] | None = None,
        opt_func: Callable[..., Optimizer] = torch.optim.AdamW,
        wd: float = 1e-2,
        path: Path = Path("runs"),
        reporter: Reporter | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.data, self.loss_func, self.metrics = data, loss_func, list(metrics)
        self.model = model.to(data.device)
        self.trained: nn.Module = self.model  # what training steps call: DDP's wrapper under torchrun
        self.layer_groups = list(layer_groups or [model])
        self.opt_func, self.wd, self.path, self.reporter = opt_func, wd, path, reporter
        self.meta: dict[str, Any] = dict(meta or {})  # plain data saved with every checkpoint
        self.history: list[EpochRecord] = []
        self.n_frozen = 0
        self.amp_dtype: torch.dtype | None = None
        self.opt: Optimizer | None = None
        self.stream_validation = False  # True for language models: see `validate`
        self.compile_backend: str | None = None  # set by `compile()`: DDP's wrapper is compiled too

    @property
    def device(self) -> torch.device:
        return self.data.device

    # ---- freezing and learning rates -------------------------------------------------------

    def freeze_to(self, n: int) -> None:
        """Freeze the first `n` layer groups (negative counts from the end).

        Normalization layers of frozen groups keep training: their statistics must follow
        the new data even when the convolutions do not.
        """
        n = n % len(self.layer_groups) if n < 0 else min(n, len(self.layer_groups))
        self.n_frozen = n
        for i, group in enumerate(self.layer_groups):
            for module in group.modules():
                trainable = i >= n or isinstance(module, _NORM_TYPES)
                for p in module.parameters(recurse=False):
                    p.requires_grad_(trainable)

    def freeze(self) -> None:
        """Train only the head (and normalization layers): the first step with a pretrained body."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    def lr_range(self, lr: float | slice) -> list[float]:
        """One rate per layer group: a float for all; `slice(lo, hi)` geometric from lo to hi;
        `slice(hi)` gives hi to the head and hi/10 to the body (fastai's convention)."""
        n = len(self.layer_groups)
        if not isinstance(lr, slice):
            return [float(lr)] * n
        if lr.start is None:
            return [lr.stop / 10] * (n - 1) + [float(lr.stop)]
        if n == 1:
            return [float(lr.stop)]
        ratio = (lr.stop / lr.start) ** (1 / (n - 1))
        return [float(lr.start * ratio**i) for i in range(n)]

    def to_fp16(self) -> Learner:
        """Mixed precision: fp16 autocast + loss scaling on CUDA, bf16 autocast on the CPU."""
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return self

    def to_channels_last(self) -> Learner:
        """NHWC weights and batches: oneDNN's and cuDNN's fast layout for convolutions."""
        self.model.to(memory_format=torch.channels_last)
        to_channels_last = getattr(self.data, "to_channels_last", None)
        if to_channels_last is not None:
            to_channels_last()
        return self

    def compile(self, backend: str = "inductor") -> Learner:
        """Train through `torch.compile` (TorchInductor: fused kernels on CPU and CUDA). The first
        batches pay the compilation; validation, checkpoints and export use the plain module."""
        self.compile_backend = backend
        self.trained = torch.compile(self.trained, backend=backend)  # type: ignore[assignment]
        return self

    # ---- fitting ---------------------------------------------------------------------------

    def fit(
        self, epochs: int, lr: float | slice = 1e-3, stage: str | None = None, resume: bool = False
    ) -> None:
        """Train `epochs` epochs at constant rates."""
        plan = _Plan("constant", epochs, tuple(self.lr_range(lr)), len(self.data.train_dl))
        self._fit(plan, lambda opt, steps: None, stage, resume)

    def fit_one_cycle(
        self,
        epochs: int,
        max_lr: float | slice = 1e-3,
        stage: str | None = None,
        resume: bool = False,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        moms: tuple[float, float] = (0.95, 0.85),
    ) -> None:
        """Leslie Smith's one cycle: rates warm up to `max_lr` then anneal far below it, while
        momentum (Adam's beta1) moves the opposite way."""
        plan = _Plan("one_cycle", epochs, tuple(self.lr_range(max_lr)), len(self.data.train_dl))

        def schedule(opt: Optimizer, total_steps: int) -> LRScheduler:
            return OneCycleLR(
                opt,
                max_lr=list(plan.lrs),
                total_steps=total_steps,
                pct_start=pct_start,
                div_factor=div_factor,
                final_div_factor=final_div_factor,
                base_momentum=moms[1],
                max_momentum=moms[0],
            )

        self._fit(plan, schedule, stage, resume)

    def make_optimizer(self, lrs: Sequence[float]) -> Optimizer:
        """One parameter group per layer group; frozen parameters get no gradient and so no step."""
        groups = [
            {"params": list(g.parameters()), "lr": lr} for g, lr in zip(self.layer_groups, lrs, strict=True)
        ]
        return self.opt_func(groups, lr=lrs[-1], weight_decay=self.wd, betas=(0.9, 0.99))

    def _fit(
        self,
        plan: _Plan,
        schedule: Callable[[Optimizer, int], LRScheduler | None],
        stage: str | None,
        resume: bool,
    ) -> None:
        if plan.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {plan.epochs}")
        self.opt = opt = self.make_optimizer(plan.lrs)
        steps_per_epoch = len(self.data.train_dl)
        sched = schedule(opt, plan.epochs * steps_per_epoch)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        start = 0
        if resume:
            start = self._restore(stage, plan, opt, sched, scaler)
        self._wrap_for_ranks()  # after a resume's freeze_to: DDP must see the final trainable set
        if self.reporter:
            self.reporter.fit_begin(plan.epochs, start, steps_per_epoch)
        for epoch in range(start, plan.epochs):
            began = time.perf_counter()
            train_loss = self._train_epoch(epoch, opt, sched, scaler)
            valid_loss, metrics = self.validate()
            record = EpochRecord(epoch + 1, train_loss, valid_loss, metrics, time.perf_counter() - began)
            self.history.append(record)
            if stage is not None and self.is_main:
                self.save(stage, plan=plan, sched=sched, scaler=scaler, epoch=epoch + 1)
            if self.reporter:
                self.reporter.epoch_end(record)
        if self.reporter:
            self.reporter.fit_end()

    def _train_epoch(
        self, epoch: int, opt: Optimizer, sched: LRScheduler | None, scaler: torch.amp.GradScaler
    ) -> float:
        self.trained.train()
        self.data.train_dl.set_epoch(epoch)
        total, count = torch.zeros((), device=self.device), 0
        for x, y in self.data.train_dl:
            loss = self.train_step(x, y, opt, scaler)
            total += loss * len(x)
            count += len(x)
            if self.reporter:
                self.reporter.batch_end(loss)  # before the scheduler moves on: it sees this batch's rates
            if sched is not None:
                sched.step()
        if self.data.ranks is not None:  # the mean over every rank's items
            sums = torch.stack([total.float(), torch.tensor(float(count), device=total.device)])
            dist.all_reduce(sums)
            total, count = sums[0], int(sums[1])
        return float(total) / max(count, 1)

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, opt: Optimizer, scaler: torch.amp.GradScaler
    ) -> torch.Tensor:
        """Forward, backward and one optimizer step on a batch; returns the batch loss."""
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss = self.loss_func(self.trained(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    # ---- evaluation ------------------------------------------------------------------------

    def get_preds(self, loader: Loader | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw model outputs (fp32, CPU) and targets over a whole loader (validation by default)."""
        loader = self.data.valid_dl if loader is None else loader
        self.model.eval()
        preds, targets = [], []
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ),
        ):
            for x, y in loader:
                preds.append(self.model(x).float())
                targets.append(y)
        ranks = self.data.ranks
        if ranks is None:
            return torch.cat(preds).cpu(), torch.cat(targets).cpu()
        assert isinstance(loader, DeviceLoader)  # torchrun shards image loaders only
        total = len(loader.dl.dataset)  # type: ignore[arg-type]
        return (
            gather_in_order(torch.cat(preds), total, ranks).cpu(),
            gather_in_order(torch.cat(targets), total, ranks).cpu(),
        )

    def predict(self, paths: Sequence[Path]) -> torch.Tensor:
        """Raw outputs for images on disk, prepared exactly as validation images are."""
        data = self.data
        if not isinstance(data, DataBunch):
            raise TypeError(f"predict reads image files; this learner's data is a {type(data).__name__}")
        src = data.src
        dataset = ImageDataset(ItemList.from_list(list(paths)), None, sized(src.tfms[1], src.size))
        batch = torch.stack([dataset[i][0] for i in range(len(dataset))])
        self.model.eval()
        with torch.inference_mode():
            return self.model(data.valid_dl.prepare(batch)).float().cpu()

    def validate(self) -> tuple[float, dict[str, float]]:
        """Validation loss and every metric, each computed over the whole validation set.

        With `stream_validation` they are per-batch values averaged by batch size instead: exact
        for means over items (cross-entropy, accuracy), and the only way for a language model,
        whose outputs over a whole set (tokens × vocabulary) would not fit in memory."""
        if self.stream_validation:
            return self._streamed_validation()
        preds, targets = self.get_preds()
        loss = float(self.loss_func(preds, targets))
        return loss, {metric_name(m): float(m(preds, targets)) for m in self.metrics}

    def _streamed_validation(self) -> tuple[float, dict[str, float]]:
        self.model.eval()
        totals = torch.zeros(1 + len(self.metrics), dtype=torch.float64)
        count = 0
        with torch.inference_mode():
            for x, y in self.data.valid_dl:
                preds = self.model(x).float()
                values = [self.loss_func(preds, y), *(m(preds, y) for m in self.metrics)]
                totals += torch.tensor([float(v) for v in values], dtype=torch.float64) * y.numel()
                count += y.numel()
        means = (totals / max(count, 1)).tolist()
        return means[0], {metric_name(m): v for m, v in zip(self.metrics, means[1:], strict=True)}

    # ---- ranks (torchrun) --------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints: always alone, rank 0 under torchrun."""
        return self.data.ranks is None or self.data.ranks.main

    def _wrap_for_ranks(self) -> None:
        """Under torchrun, train through DDP. Wrapped per fit, after freezing: DDP syncs the
        gradients of the parameters that require them when it is built, and frozen ones must not wait."""
        if self.data.ranks is None:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.trained = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.compile_backend is not None:
            self.trained = torch.compile(self.trained, backend=self.compile_backend)  # type: ignore[assignment]

    # ---- stages ----------------------------------------------------------------------------

    def stage_path(self, stage: str) -> Path:
        return self.path / f"{stage}.pt"

    def save(
        self,
        stage: str,
        plan: _Plan | None = None,
        sched: LRScheduler | None = None,
        scaler: torch.amp.GradScaler | None = None,
        epoch: int | None = None,
    ) -> Path:
        """Write model, optimizer, scheduler, epoch and history to `<path>/<stage>.pt`, atomically."""
        path = self.stage_path(stage)
        complete = plan is None or epoch == plan.epochs
        atomic_save(
            {
                "format": 1,
                "model": self.model.state_dict(),
                "opt": None if self.opt is None else self.opt.state_dict(),
                "sched": None if sched is None else sched.state_dict(),
                "scaler": None if scaler is None else scaler.state_dict(),
                "plan": None if plan is None else dataclasses.asdict(plan) | {"lrs": list(plan.lrs)},
                "epoch": epoch,
                "complete": complete,
                "n_frozen": self.n_frozen,
                "history": [dataclasses.asdict(r) for r in self.history],
                "rng": torch.get_rng_state(),
                "meta": self.meta,
            },
            path,
        )
        return path

    def load(self, stage: str, with_opt: bool = False) -> dict[str, Any]:
        """Load a stage's weights (and optimizer state if asked); returns the checkpoint."""
        state = load_checkpoint(self.stage_path(stage))
        self.load_weights(state, self.stage_path(stage))
        if with_opt and state.get("opt") is not None:
            self.opt = self.opt or self.make_optimizer(self.lr_range(1e-3))
            self.opt.load_state_dict(state["opt"])
        return state

    def load_weights(self, state: dict[str, Any], path: Path) -> None:
        """Weights from a checkpoint already read (`path` names it in errors)."""
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ConfigError(f"{path}: weights do not fit this model ({err})") from err

    def _restore(
        self,
        stage: str | None,
        plan: _Plan,
        opt: Optimizer,
        sched: LRScheduler | None,
        scaler: torch.amp.GradScaler,
    ) -> int:
        """Continue from `stage`'s last checkpoint; returns the number of epochs already done."""
        if stage is None:
            raise ConfigError("resume needs the stage whose checkpoint to continue")
        path = self.stage_path(stage)
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint {path} to continue from; start without --resume")
        state = load_checkpoint(path)
        saved = state.get("plan") or {}
        if saved != dataclasses.asdict(plan) | {"lrs": list(plan.lrs)}:
            raise ConfigError(
                f"--resume: {path} was written by a different fit ({saved}); "
                f"asked for {dataclasses.asdict(plan)}. Repeat the original options."
            )
        for key in _RESUME_MUST_MATCH:
            before, now = state.get("meta", {}).get(key), self.meta.get(key)
            if before != now:
                raise ConfigError(f"--resume: {path} was trained with {key}={before!r}, this run has {now!r}")
        self.load_weights(state, path)
        self.freeze_to(int(state["n_frozen"]))
        opt.load_state_dict(state["opt"])
        if sched is not None and state.get("sched") is not None:
            sched.load_state_dict(state["sched"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.history = [EpochRecord(**r) for r in state["history"]]
        return int(state["epoch"] or 0)

    # ---- learning-rate finder ---------------------------------------------------------------

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
        rule: str = DEFAULT_RULE,
    ) -> LRFind:
        """Sweep the rate exponentially; returns an `LRFind` (curve, every rule's suggestion, the
        one `rule` picks, `plot(path)`). The model and optimizer are restored afterwards."""
        return lr_find(self, start_lr, end_lr, num_it, stop_div, rule=rule)
