"""The loop's seam: the events a fit announces, the state its callbacks see, the order they run in.

fastai's events, those this loop has: `before_fit`, `before_epoch`, `before_batch`, `after_loss`,
`after_backward`, `after_step`, `after_batch`, `after_train` (the epoch's batches are done, before
validation), `after_epoch`, `after_fit`. A callback overrides the ones it needs and reads or changes
the running `Fit`; `after_fit` runs however the fit ends, so a callback can always put things back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

if TYPE_CHECKING:
    from training.checkpoint import FitPlan
    from training.learner import Learner

__all__ = ["EVENTS", "Callback", "CancelFit", "Event", "Events", "Fit"]

Event = Literal[
    "before_fit",
    "before_epoch",
    "before_batch",
    "after_loss",
    "after_backward",
    "after_step",
    "after_batch",
    "after_train",
    "after_epoch",
    "after_fit",
]
EVENTS: tuple[Event, ...] = get_args(Event)


class CancelFit(Exception):  # noqa: N818  (fastai's name: it is a signal, not an error)
    """Raised by a callback to end the fit where it stands; `after_fit` still runs."""


def _no_tensor() -> torch.Tensor:
    return torch.empty(0)


@dataclass(eq=False)
class Fit:
    """One run of the loop, as its callbacks see it: what was asked, the optimizer and friends, and
    where it has got to. `x`, `y` and `loss` are the current batch's (`loss` is detached from
    `after_step` on); `loss_sum` and `items` add up the epoch so far."""

    learn: Learner[Any]
    opt: Optimizer
    epochs: int
    scaler: torch.amp.GradScaler
    """Loss scaling: a disabled scaler (backward and step as they are) unless fp16 enables one."""
    plan: FitPlan | None = None
    sched: LRScheduler | None = None
    stage: str | None = None
    """Checkpoint each epoch to `<path>/<stage>.pt` (None: no checkpoints)."""
    resume: bool = False
    validates: bool = True
    """Validate and record a history row after each epoch (the rate sweep does neither)."""
    start_epoch: int = 0
    epoch: int = 0
    x: torch.Tensor = field(default_factory=_no_tensor)
    y: torch.Tensor = field(default_factory=_no_tensor)
    loss: torch.Tensor = field(default_factory=_no_tensor)
    loss_sum: torch.Tensor = field(default_factory=_no_tensor)
    items: int = 0


class Callback:
    """Hooks into the loop; every event does nothing unless overridden.

    `order` sorts callbacks (lower first, the learner's own are spaced by tens). `shapes_the_step`
    marks callbacks that change how a batch is computed (mixed precision, compilation): the learning
    rate sweep runs through them too, but not through those that record a fit (checkpoints,
    progress) or spread it over processes."""

    order: ClassVar[int] = 50
    shapes_the_step: ClassVar[bool] = False

    def before_fit(self, fit: Fit) -> None:
        """Once, before the first epoch: a resume moves `fit.start_epoch` here."""

    def before_epoch(self, fit: Fit) -> None: ...

    def before_batch(self, fit: Fit) -> None:
        """`fit.x` and `fit.y` hold the batch; nothing has run on it yet."""

    def after_loss(self, fit: Fit) -> None:
        """`fit.loss` is the batch's loss, still attached to its graph."""

    def after_backward(self, fit: Fit) -> None:
        """Gradients are in (scaled, under fp16 on CUDA)."""

    def after_step(self, fit: Fit) -> None:
        """The optimizer has stepped; gradients are not yet cleared."""

    def after_batch(self, fit: Fit) -> None:
        """`fit.loss` is detached (reading it waits for the device); the scheduler has not moved yet."""

    def after_train(self, fit: Fit) -> None:
        """The epoch's batches are done: `fit.loss_sum` / `fit.items` is its training loss."""

    def after_epoch(self, fit: Fit) -> None:
        """The epoch is validated and its row is the last of `learn.history` (when `fit.validates`)."""

    def after_fit(self, fit: Fit) -> None:
        """However the fit ended: finished, cancelled or failed."""


class Events:
    """Callbacks in `order`, each event's hooks looked up once: announcing an event to callbacks
    that ignore it costs nothing per batch."""

    def __init__(self, cbs: Iterable[Callback]) -> None:
        ordered = sorted(cbs, key=lambda cb: cb.order)
        self.hooks: dict[Event, list[Callable[[Fit], None]]] = {
            event: [getattr(cb, event) for cb in ordered if _overrides(cb, event)] for event in EVENTS
        }

    def __call__(self, event: Event, fit: Fit) -> None:
        for hook in self.hooks[event]:
            hook(fit)


def _overrides(cb: Callback, event: Event) -> bool:
    return getattr(type(cb), event) is not getattr(Callback, event)
