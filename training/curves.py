"""`<stage>.curves.png`: a stage's losses and metrics per epoch, drawn from its metrics JSON.

A curve shows at a glance what the table's last row hides: whether valid loss turned up (over-
fitting), whether the metric still climbs (train longer), and how far it sits from the trivial
baseline (a dashed line beside each metric). Drawn from the whole `history`, so a resumed run's
plot covers the epochs before the kill too. Where the epoch count restarts (sentiment's gradual
unfreezing fits `clf-1`, `clf-2`, `clf` in one history) a dotted line marks the new fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_curves"]

COLUMNS = 3  # panels per row: three metrics stay readable side by side


def plot_curves(result: Mapping[str, Any], path: Path) -> Figure:
    """One panel for the train and valid losses, one per metric with its baseline; saved to `path`.

    `result` is what the metrics JSON holds (`history`, and `baseline` per metric name); the figure
    is returned so that callers (and tests) can look at its panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history: list[Mapping[str, Any]] = result["history"]
    baseline: Mapping[str, float] = result.get("baseline", {})
    names = list(history[-1]["metrics"]) if history else []
    x = list(range(1, len(history) + 1))
    panels = 1 + len(names)
    cols = min(panels, COLUMNS)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), dpi=100)
    FigureCanvasAgg(fig)
    restarts = [i + 1 for i in range(1, len(history)) if history[i]["epoch"] <= history[i - 1]["epoch"]]

    ax = fig.add_subplot(rows, cols, 1)
    ax.plot(x, [r["train_loss"] for r in history], marker="o", label="train")
    ax.plot(x, [r["valid_loss"] for r in history], marker="o", label="valid")
    ax.set_title("loss")
    axes = [ax]
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 2)
        ax.plot(x, [r["metrics"].get(name, math.nan) for r in history], marker="o", label="valid")
        if name in baseline:
            level = baseline[name]
            ax.axhline(level, color="tab:gray", linestyle="--", label=f"baseline {level:.3g}")
        ax.set_title(name)
        axes.append(ax)
    for ax in axes:
        for n, restart in enumerate(restarts):
            label = "new fit" if n == 0 and ax is axes[0] else None
            ax.axvline(restart - 0.5, color="tab:gray", linestyle=":", linewidth=1, label=label)
        ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(str(result.get("stage", "")), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return fig
