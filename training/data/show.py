"""`show_batch`: a PNG grid of one batch with its labels, to see what the model will see.

Tags and classes become titles, masks are painted over their image (one colour per code, code 0
left clear), points are drawn as crosses: after augmentation, so a mask or point that did not
follow its image shows at a glance. The painting helpers are shared with `train-kit predict --show`
(`training.show_answers`), so a batch and a model's answers look alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from training.data.bunch import DataBunch
from training.data.points import PointsEncoder

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["code_colour", "mark_points", "paint_mask", "panel_grid", "save_figure", "show_batch"]


def show_batch(data: DataBunch, path: Path, rows: int = 3, valid: bool = False) -> Path:
    """Draw up to rows×rows augmented training (or validation) images with their targets."""
    loader = data.valid_dl if valid else data.train_dl
    images, targets = next(iter(loader.raw()))
    n = min(rows * rows, len(images))
    fig, axes = panel_grid(n, cols=rows, rows=rows, inches=(2.2, 2.4))
    encoder = data.src.encoder
    for ax, image, target in zip(axes, images[:n], targets[:n], strict=True):
        ax.imshow(image.permute(1, 2, 0).numpy())
        if isinstance(encoder, PointsEncoder):
            height, width = image.shape[-2:]
            mark_points(ax, ((target.reshape(-1, 2) + 1) / 2 * torch.tensor([width, height])).numpy())
        elif target.dim() == 2:  # a mask of codes
            paint_mask(ax, target.numpy(), len(data.classes))
        else:
            label = encoder.decode(target)
            ax.set_title(" ".join(label) if isinstance(label, list) else str(label), fontsize=7, wrap=True)
    return save_figure(fig, path)


def panel_grid(
    n: int, cols: int | None = None, rows: int | None = None, inches: tuple[float, float] = (3.0, 3.3)
) -> tuple[Figure, list[Axes]]:
    """A figure of `n` image panels (axes off), near-square unless `cols` says otherwise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = rows or max(1, math.ceil(n / cols))
    fig = Figure(figsize=(cols * inches[0], rows * inches[1]), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for ax in axes:
        ax.axis("off")
    return fig, axes


def code_colour(code: int, n_codes: int) -> tuple[float, float, float, float]:
    """The colour `paint_mask` gives `code`: for a legend that matches the picture."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    colour = colormaps["tab20"](Normalize(0, max(n_codes - 1, 1))(code))
    return (float(colour[0]), float(colour[1]), float(colour[2]), float(colour[3]))


def paint_mask(ax: Axes, mask: np.ndarray, n_codes: int) -> None:
    """Blend a (height, width) class-id mask over the image; code 0 (background) stays clear."""
    masked = np.where(mask == 0, np.nan, mask.astype(np.float32))
    ax.imshow(masked, cmap="tab20", alpha=0.5, vmin=0, vmax=max(n_codes - 1, 1), interpolation="nearest")


def mark_points(ax: Axes, xy: np.ndarray, names: Sequence[str] = ()) -> None:
    """Red crosses at (x, y) in continuous pixel coordinates (0 is the image's left edge), named if
    `names` are given."""
    centres = np.asarray(xy, np.float64).reshape(-1, 2) - 0.5  # imshow puts pixel centres on integers
    ax.scatter(centres[:, 0], centres[:, 1], marker="+", s=80, c="red")
    for name, (x, y) in zip(names, centres, strict=False):
        box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7, "linewidth": 0}
        ax.annotate(
            name, (x, y), xytext=(5, 5), textcoords="offset points", color="red", fontsize=8, bbox=box
        )


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out and write the PNG, making its folder."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
