"""The learning-rate finder: train briefly while the rate grows exponentially, watch the loss.

The sweep records smoothed losses; `training.lr_suggestions` reads them (valley by default, or
steep, minimum, slide), and the plot marks every rule's rate on the curve.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from training.lr_suggestions import DEFAULT_RULE, RULES, SKIP_END, suggest

if TYPE_CHECKING:
    from training.learner import Learner

__all__ = ["LRFind", "lr_find"]


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
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    beta: float = 0.98,
    rule: str = DEFAULT_RULE,
) -> LRFind:
    """Run the sweep on `learn` (same rate for every layer group), then restore its weights;
    `rule` (one of `RULES`) chooses the suggestion."""
    if rule not in RULES:
        raise ValueError(f"no suggestion rule {rule!r}; choose one of {', '.join(RULES)}")
    saved_model = copy.deepcopy(learn.model.state_dict())
    opt = learn.make_optimizer([start_lr] * len(learn.layer_groups))
    scaler = torch.amp.GradScaler(learn.device.type, enabled=learn.amp_dtype == torch.float16)
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    learn.model.train()
    try:
        epoch = 0
        while len(lrs) < num_it:
            learn.data.train_dl.set_epoch(epoch)
            for x, y in learn.data.train_dl:
                lr = start_lr * (end_lr / start_lr) ** (len(lrs) / max(num_it - 1, 1))
                for group in opt.param_groups:
                    group["lr"] = lr
                loss = float(learn.train_step(x, y, opt, scaler))
                average = beta * average + (1 - beta) * loss
                smoothed = average / (1 - beta ** (len(lrs) + 1))
                lrs.append(lr)
                losses.append(smoothed)
                best = min(best, smoothed)
                if len(lrs) >= num_it or (stop_div and (smoothed > 4 * best or not math.isfinite(smoothed))):
                    break
            else:
                epoch += 1
                continue
            break
    finally:
        learn.model.load_state_dict(saved_model)
    return LRFind(lrs, losses, suggest(lrs, losses, num_it), rule)
