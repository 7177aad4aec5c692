"""The learner: a plain PyTorch training loop a reader can follow top to bottom, with fastai's
callback seam.

Verbs, named for what the user means: `fit`, `fit_one_cycle`, `lr_find`, `freeze`, `freeze_to`,
`unfreeze`, `to_fp16`, `to_channels_last`, `compile`, `save`, `load`, `validate`, `get_preds`,
`predict`. Layer groups (early body, late body, head) carry discriminative learning rates:
`max_lr=slice(1e-5, 1e-3)` spreads rates geometrically.

`run` is the whole loop: each batch's forward, loss, backward and step, each epoch's validation
and history row, every step announced to callbacks (`training.callbacks`). What varies is a
callback: mixed precision and torch.compile (`to_fp16`, `compile`), DDP under torchrun
(`training.distributed`), a checkpoint after each epoch of a fit given a `stage` and `resume=True`
(`training.checkpoint`), progress (a `Reporter`), and the learning-rate sweep (`training.lr_finder`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from training.callbacks import (
    Callback,
    CancelFit,
    Compile,
    EpochRecord,
    Events,
    Fit,
    MixedPrecision,
    Reporter,
    ReportProgress,
)
from training.checkpoint import Checkpoints, FitPlan, load_stage, load_weights, save_stage
from training.data.block import ItemList
from training.data.bunch import DataBunch, DeviceLoader
from training.data.datasets import ImageDataset
from training.data.interface import Loader, TrainingData
from training.data.transforms import sized
from training.distributed import DistributedTraining, gather_in_order
from training.errors import ConfigError
from training.lr_finder import LRFind, lr_find
from training.lr_suggestions import DEFAULT_RULE
from training.metrics import Metric, metric_name

__all__ = ["Callback", "EpochRecord", "Learner", "LossFunc", "Reporter"]

LossFunc = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
D = TypeVar("D", bound=TrainingData)
C = TypeVar("C", bound=Callback)


class Learner(Generic[D]):
    """Trains `model` on `data` with `loss_func`, reporting `metrics` on the validation set.

    `data` is anything with the loaders the loop uses (`TrainingData`): an image `DataBunch` or a
    `TextDataBunch`; `predict` reads image files and so needs a `DataBunch`. `cbs` join the
    learner's own callbacks (checkpoints, DDP under torchrun, progress to `reporter`) in every fit."""

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
        cbs: Sequence[Callback] = (),
    ) -> None:
        self.data, self.loss_func, self.metrics = data, loss_func, list(metrics)
        self.model = model.to(data.device)
        self.trained: nn.Module = self.model  # what training steps call: DDP's wrapper under torchrun
        self.layer_groups = list(layer_groups or [model])
        self.opt_func, self.wd, self.path, self.reporter = opt_func, wd, path, reporter
        self.meta: dict[str, Any] = dict(meta or {})  # plain data saved with every checkpoint
        self.history: list[EpochRecord] = []
        self.n_frozen = 0
        self.opt: Optimizer | None = None
        self.stream_validation = False  # True for language models: see `validate`
        self.cbs: list[Callback] = [Checkpoints(), DistributedTraining(), ReportProgress(), *cbs]

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype `to_fp16` chose (None: fp32 throughout)."""
        precision = self._callback(MixedPrecision)
        return None if precision is None else precision.dtype

    @property
    def compile_backend(self) -> str | None:
        """The backend `compile` chose (None: eager)."""
        compiled = self._callback(Compile)
        return None if compiled is None else compiled.backend

    def add_cb(self, cb: Callback) -> Learner[D]:
        """Run `cb` in every fit from now on (and in `lr_find` if it `shapes_the_step`)."""
        self.cbs.append(cb)
        return self

    def _callback(self, kind: type[C]) -> C | None:
        return next((cb for cb in self.cbs if isinstance(cb, kind)), None)

    def _replace_callback(self, cb: Callback) -> None:
        self.cbs = [*(other for other in self.cbs if type(other) is not type(cb)), cb]

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

    def to_fp16(self) -> Learner[D]:
        """Mixed precision: fp16 autocast + loss scaling on CUDA, bf16 autocast on the CPU."""
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self._replace_callback(MixedPrecision(dtype))
        return self

    def to_channels_last(self) -> Learner[D]:
        """NHWC weights and batches: oneDNN's and cuDNN's fast layout for convolutions."""
        self.model.to(memory_format=torch.channels_last)
        to_channels_last = getattr(self.data, "to_channels_last", None)
        if to_channels_last is not None:
            to_channels_last()
        return self

    def compile(self, backend: str = "inductor") -> Learner[D]:
        """Train through `torch.compile` (TorchInductor: fused kernels on CPU and CUDA). The first
        batches pay the compilation; validation, checkpoints and export use the plain module."""
        self._replace_callback(Compile(backend))
        return self

    # ---- fitting ---------------------------------------------------------------------------

    def fit(
        self, epochs: int, lr: float | slice = 1e-3, stage: str | None = None, resume: bool = False
    ) -> None:
        """Train `epochs` epochs at constant rates."""
        plan = FitPlan("constant", epochs, tuple(self.lr_range(lr)), len(self.data.train_dl))
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
        plan = FitPlan("one_cycle", epochs, tuple(self.lr_range(max_lr)), len(self.data.train_dl))

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
        plan: FitPlan,
        schedule: Callable[[Optimizer, int], LRScheduler | None],
        stage: str | None,
        resume: bool,
    ) -> None:
        if plan.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {plan.epochs}")
        self.opt = opt = self.make_optimizer(plan.lrs)
        fit = Fit(
            self,
            opt,
            plan.epochs,
            scaler=torch.amp.GradScaler(self.device.type, enabled=False),
            plan=plan,
            sched=schedule(opt, plan.epochs * plan.steps_per_epoch),
            stage=stage,
            resume=resume,
        )
        self.run(fit, self.cbs)

    def run(self, fit: Fit, cbs: Sequence[Callback]) -> None:
        """The loop: epochs from `fit.start_epoch` (a resume moves it) to `fit.epochs`, each a pass
        over the training data then, if `fit.validates`, validation and a row of `history`; every
        step announced to `cbs`. A callback ends it early by raising `CancelFit`; `after_fit` runs
        however it ends."""
        events = Events(cbs)
        try:
            events("before_fit", fit)
            for epoch in range(fit.start_epoch, fit.epochs):
                fit.epoch = epoch
                began = time.perf_counter()
                events("before_epoch", fit)
                train_loss = self._train_epoch(fit, events)
                if fit.validates:
                    valid_loss, metrics = self.validate()
                    seconds = time.perf_counter() - began
                    self.history.append(EpochRecord(epoch + 1, train_loss, valid_loss, metrics, seconds))
                events("after_epoch", fit)
        except CancelFit:
            pass
        finally:
            events("after_fit", fit)

    def _train_epoch(self, fit: Fit, events: Events) -> float:
        """One pass over the training data; returns the mean loss over its items."""
        self.trained.train()
        self.data.train_dl.set_epoch(fit.epoch)
        fit.loss_sum, fit.items = torch.zeros((), device=self.device), 0
        for x, y in self.data.train_dl:
            fit.x, fit.y = x, y
            events("before_batch", fit)
            fit.loss = self.loss_func(self.trained(fit.x), fit.y)
            events("after_loss", fit)
            fit.scaler.scale(fit.loss).backward()
            events("after_backward", fit)
            fit.scaler.step(fit.opt)
            fit.scaler.update()
            events("after_step", fit)
            fit.opt.zero_grad(set_to_none=True)
            fit.loss = fit.loss.detach()
            fit.loss_sum += fit.loss * len(fit.x)
            fit.items += len(fit.x)
            events("after_batch", fit)
            if fit.sched is not None:
                fit.sched.step()  # after `after_batch`: callbacks see the rates this batch trained at
        events("after_train", fit)
        return float(fit.loss_sum) / max(fit.items, 1)

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

    # ---- stages ----------------------------------------------------------------------------

    def stage_path(self, stage: str) -> Path:
        return self.path / f"{stage}.pt"

    def save(self, stage: str) -> Path:
        """Write model, optimizer, epoch and history to `<path>/<stage>.pt`, atomically."""
        return save_stage(self, stage)

    def load(self, stage: str, with_opt: bool = False) -> dict[str, Any]:
        """Load a stage's weights (and optimizer state if asked); returns the checkpoint."""
        return load_stage(self, stage, with_opt)

    def load_weights(self, state: dict[str, Any], path: Path) -> None:
        """Weights from a checkpoint already read (`path` names it in errors)."""
        load_weights(self.model, state, path)

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
