"""The CLI's view of a fit: a rich progress bar per epoch (batches, time left, running loss) and
one table row per epoch."""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from training.callbacks import EpochRecord

__all__ = ["RichReporter"]


class RichReporter:
    """Prints `epoch  train_loss  valid_loss  <metrics>  time` rows above a transient batch bar."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.header_printed = False
        self.batches = 0
        self.epochs = 0
        self.loss_read_at = 0.0
        self.smoothed: float | None = None

    def fit_begin(self, epochs: int, start_epoch: int, batches: int) -> None:
        self.epochs, self.batches = epochs, batches
        self.header_printed = False
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        if start_epoch:
            self.console.print(f"resuming after epoch {start_epoch} of {epochs}")
        self.smoothed = None
        self.task = self.progress.add_task(
            "train", total=batches, epoch=start_epoch + 1, epochs=epochs, loss=""
        )

    def batch_end(self, loss: torch.Tensor) -> None:
        """Advance the bar; show the smoothed loss, read from the device twice a second at most (a
        read waits for the GPU)."""
        if self.progress is None or self.task is None:
            return
        now = time.monotonic()
        read = now - self.loss_read_at >= 0.5
        if read:
            self.loss_read_at = now
            value = float(loss)
            self.smoothed = value if self.smoothed is None else 0.9 * self.smoothed + 0.1 * value
        shown = "" if self.smoothed is None else f"loss {self.smoothed:.4f}"
        # Drawn at once when it changes: the bar's own 10 Hz refresh can miss a short epoch entirely.
        self.progress.update(self.task, advance=1, loss=shown, refresh=read)

    def epoch_end(self, record: EpochRecord) -> None:
        names = ["epoch", "train_loss", "valid_loss", *record.metrics, "time"]
        widths = [max(len(n), 10) for n in names]
        if not self.header_printed:
            self.console.print(
                "  ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True)), style="bold"
            )
            self.header_printed = True
        minutes, seconds = divmod(int(record.seconds), 60)
        values = [
            str(record.epoch),
            *(f"{v:.6f}" for v in (record.train_loss, record.valid_loss, *record.metrics.values())),
            f"{minutes}:{seconds:02d}",
        ]
        self.console.print("  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
        if self.progress is not None and self.task is not None and record.epoch < self.epochs:
            self.progress.reset(
                self.task, total=self.batches, epoch=record.epoch + 1, epochs=self.epochs, loss=""
            )
            self.smoothed = None

    def fit_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
