"""The learning-rate finder: train briefly while the rate grows exponentially, watch the loss.

The suggestion is the rate where the smoothed loss falls fastest (steepest descent on a log
axis), taken before the loss reaches its minimum: past that point training is diverging.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from training.learner import Learner

__all__ = ["LRFind", "lr_find", "steepest_lr"]


@dataclass
class LRFind:
    """The sweep's rates, smoothed losses and suggested rate."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def plot(self, path: Path, skip_start: int = 5, skip_end: int = 3) -> Path:
        """Loss against rate (log axis) with the suggestion marked, as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        end = max(skip_start + 2, len(self.lrs) - skip_end)
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(self.lrs[skip_start:end], self.losses[skip_start:end])
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggested {self.suggestion:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path


def steepest_lr(lrs: list[float], losses: list[float]) -> float:
    """The rate where the loss falls fastest against log(rate), before the loss minimum."""
    if len(lrs) < 3:
        raise ValueError(f"need at least 3 points to find a slope, got {len(lrs)}")
    lowest = int(np.argmin(losses))
    end = max(lowest + 1, 3)
    slopes = np.gradient(np.asarray(losses[:end]), np.log(np.asarray(lrs[:end])))
    return float(lrs[int(np.argmin(slopes))])


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    beta: float = 0.98,
) -> LRFind:
    """Run the sweep on `learn` (same rate for every layer group), then restore its weights."""
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
    return LRFind(lrs, losses, steepest_lr(lrs, losses))
