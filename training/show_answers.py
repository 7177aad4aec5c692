"""`train-kit predict --show out.png`: a bundle's answers drawn on its input images, one panel each.

A JSON line of scores or pixel shares says little about *where* a model looks; the picture does.
Tags and classes become the panel's title (each with its score), a mask is blended over its image
with a legend of the class names it holds, points are red crosses with their names. The painting
is `show_batch`'s (`training.data.show`), so answers look like the batches the model trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.bundle.images import decode_image
from training.data.show import code_colour, mark_points, paint_mask, panel_grid, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["show_answers"]


def show_answers(
    images: Sequence[Path], answers: Sequence[Mapping[str, Any]], labels: Sequence[str], path: Path
) -> Figure:
    """Draw each image with its answer (`Bundle.predict`'s, in the task's terms) into a grid PNG at
    `path`; `labels` are the bundle's (a mask's class names). Returns the figure."""
    fig, axes = panel_grid(len(images))
    for ax, image, answer in zip(axes, images, answers, strict=True):
        ax.imshow(decode_image(image.read_bytes()).permute(1, 2, 0).numpy())
        ax.set_title(f"{image.name}\n{_draw(ax, answer, labels)}", fontsize=8, wrap=True)
    save_figure(fig, path)
    return fig


def _draw(ax: Axes, answer: Mapping[str, Any], labels: Sequence[str]) -> str:
    """Paint what belongs on the image; return what belongs in the title."""
    if "mask" in answer:
        mask = np.asarray(answer["mask"])
        _legend(ax, mask, labels)
        paint_mask(ax, mask, len(labels))
        return ""
    if "points" in answer:
        points = answer["points"]
        mark_points(ax, np.array([[p["x"], p["y"]] for p in points]), [p["name"] for p in points])
        return ""
    scores: Mapping[str, float] = answer["scores"]
    chosen = answer["labels"] if "labels" in answer else [answer["label"]]
    return "  ".join(f"{label} {scores[label]:.2f}" for label in chosen) or "(no label over its threshold)"


def _legend(ax: Axes, mask: np.ndarray, labels: Sequence[str]) -> None:
    """The class names the mask holds, in their colours (code 0, background, is left clear)."""
    from matplotlib.patches import Patch

    present = [int(c) for c in np.unique(mask) if c != 0 and c < len(labels)]
    handles = [Patch(color=code_colour(c, len(labels)), alpha=0.8, label=labels[c]) for c in present]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.7)
