"""`show_batch`: a PNG grid of one batch with its labels, to see what the model will see."""

from __future__ import annotations

from pathlib import Path

from training.data.bunch import DataBunch

__all__ = ["show_batch"]


def show_batch(data: DataBunch, path: Path, rows: int = 3, valid: bool = False) -> Path:
    """Draw up to rows×rows augmented training (or validation) images, titled with their labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loader = data.valid_dl if valid else data.train_dl
    images, targets = next(iter(loader.raw()))
    n = min(rows * rows, len(images))
    fig = Figure(figsize=(rows * 2.2, rows * 2.4), dpi=100)
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, rows, i + 1)
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        label = data.src.encoder.decode(targets[i])
        ax.set_title(" ".join(label) if isinstance(label, list) else str(label), fontsize=7, wrap=True)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
