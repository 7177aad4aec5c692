"""`show_batch`: a PNG grid of one batch with its labels, to see what the model will see.

Tags and classes become titles, masks are painted over their image (one colour per code, code 0
left clear), points are drawn as crosses: after augmentation, so a mask or point that did not
follow its image shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.data.bunch import DataBunch
from training.data.points import PointsEncoder

__all__ = ["show_batch"]


def show_batch(data: DataBunch, path: Path, rows: int = 3, valid: bool = False) -> Path:
    """Draw up to rows×rows augmented training (or validation) images with their targets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loader = data.valid_dl if valid else data.train_dl
    images, targets = next(iter(loader.raw()))
    n = min(rows * rows, len(images))
    fig = Figure(figsize=(rows * 2.2, rows * 2.4), dpi=100)
    FigureCanvasAgg(fig)
    encoder = data.src.encoder
    for i in range(n):
        ax = fig.add_subplot(rows, rows, i + 1)
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        target = targets[i]
        if isinstance(encoder, PointsEncoder):
            height, width = images[i].shape[-2:]
            xy = (target.reshape(-1, 2) + 1) / 2 * torch.tensor([width, height])
            ax.scatter(xy[:, 0] - 0.5, xy[:, 1] - 0.5, marker="+", s=80, c="red")  # pixel centres
        elif target.dim() == 2:  # a mask of codes
            masked = torch.where(target == 0, torch.nan, target.float()).numpy()
            ax.imshow(masked, cmap="tab20", alpha=0.5, vmin=0, vmax=max(len(data.classes) - 1, 1))
        else:
            label = encoder.decode(target)
            ax.set_title(" ".join(label) if isinstance(label, list) else str(label), fontsize=7, wrap=True)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
