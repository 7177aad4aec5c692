"""The learning-rate finder: train briefly while the rate grows exponentially, watch the loss.

The sweep is a callback (`LRSweep`) on the learner's own loop. It records smoothed losses;
`training.lr_suggestions` reads them (valley by default, or steep, minimum, slide), and the plot
marks every rule's rate on the curve.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from training.callbacks import Callback, CancelFit, Fit
from training.lr_suggestions import DEFAULT_RULE, RULES, SKIP_END, suggest

if TYPE_CHECKING:
    from training.learner import Learner

__all__ = ["LRFind", "LRSweep", "lr_find"]


@dataclass
class LRFind:
    """The sweep's rates and smoothed losses, every rule's suggestion and the one chosen."""

    lrs: list[float]
    losses: list[float]
    suggestions: dict[str, float]
    rule: str = DEFAULT_RULE

    def __post_init__(self) -> None:
        if self.rule not in self.suggestions:
            raise ValueError(f"no rule {self.rule!r}; choose one of {', '.join(self.suggestions)}")

    @property
    def suggestion(self) -> float:
        """The chosen rule's rate."""
        return self.suggestions[self.rule]

    def plot(self, path: Path) -> Path:
        """Loss against rate (log axis), every rule's rate marked on the curve, as a PNG. The
        noisy first tenth and divergent end the rules skip are drawn faint."""
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        lrs, losses = np.asarray(self.lrs), np.asarray(self.losses)
        start, end = len(lrs) // 10, max(len(lrs) // 10 + 2, len(lrs) - SKIP_END)
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(lrs, losses, color="tab:blue", alpha=0.3)
        ax.plot(lrs[start:end], losses[start:end], color="tab:blue")
        shown = losses[start:end]
        low, high = float(shown.min()), float(shown.max())
        ax.set_ylim(low - 0.05 * (high - low), high + 0.25 * (high - low) + 1e-12)
        for (name, rate), marker in zip(self.suggestions.items(), "ovsD", strict=False):
            at = float(np.interp(np.log(rate), np.log(lrs), losses))
            chosen = " (chosen)" if name == self.rule else ""
            ax.plot(
                [rate],
                [at],
                marker=marker,
                markersize=9 if chosen else 7,
                linestyle="none",
                label=f"{name} {rate:.1e}{chosen}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path


def lr_find(
    learn: Learner[Any],
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    beta: float = 0.98,
    rule: str = DEFAULT_RULE,
) -> LRFind:
    """Run the sweep on `learn` (same rate for every layer group), then restore its weights;
    `rule` (one of `RULES`) chooses the suggestion. The sweep is the learner's own loop with the
    callbacks that shape a step (mixed precision, compilation) and an `LRSweep`."""
    if rule not in RULES:
        raise ValueError(f"no suggestion rule {rule!r}; choose one of {', '.join(RULES)}")
    sweep = LRSweep(start_lr, end_lr, num_it, stop_div, beta)
    fit = Fit(
        learn,
        learn.make_optimizer([start_lr] * len(learn.layer_groups)),
        epochs=math.ceil(num_it / max(len(learn.data.train_dl), 1)),
        scaler=torch.amp.GradScaler(learn.device.type, enabled=False),
        validates=False,
    )
    learn.run(fit, [*(cb for cb in learn.cbs if cb.shapes_the_step), sweep])
    return LRFind(sweep.lrs, sweep.losses, suggest(sweep.lrs, sweep.losses, num_it), rule)


class LRSweep(Callback):
    """Before each batch, the next rate of an exponential sweep from `start_lr` to `end_lr` over
    `num_it` batches; after it, the loss smoothed (bias-corrected moving average, `beta`). Stops at
    `num_it` batches or, with `stop_div`, when the smoothed loss passes 4x its best; the weights
    are put back however the sweep ends."""

    order = 50

    def __init__(self, start_lr: float, end_lr: float, num_it: int, stop_div: bool, beta: float) -> None:
        self.start_lr, self.end_lr, self.num_it = start_lr, end_lr, num_it
        self.stop_div, self.beta = stop_div, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.average, self.best = 0.0, math.inf
        self.lr = start_lr  # the current batch's
        self.saved: dict[str, torch.Tensor] | None = None

    def before_fit(self, fit: Fit) -> None:
        self.saved = copy.deepcopy(fit.learn.model.state_dict())

    def before_batch(self, fit: Fit) -> None:
        self.lr = self.start_lr * (self.end_lr / self.start_lr) ** (len(self.lrs) / max(self.num_it - 1, 1))
        for group in fit.opt.param_groups:
            group["lr"] = self.lr

    def after_batch(self, fit: Fit) -> None:
        self.average = self.beta * self.average + (1 - self.beta) * float(fit.loss)
        smoothed = self.average / (1 - self.beta ** (len(self.lrs) + 1))
        self.lrs.append(self.lr)
        self.losses.append(smoothed)
        self.best = min(self.best, smoothed)
        diverged = smoothed > 4 * self.best or not math.isfinite(smoothed)
        if len(self.lrs) >= self.num_it or (self.stop_div and diverged):
            raise CancelFit

    def after_fit(self, fit: Fit) -> None:
        if self.saved is not None:
            fit.learn.model.load_state_dict(self.saved)
