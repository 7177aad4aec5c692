"""The CLI's view of a fit: a rich progress bar per epoch and one table row per epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from training.learner import EpochRecord

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

    def fit_begin(self, epochs: int, start_epoch: int, batches: int) -> None:
        self.epochs, self.batches = epochs, batches
        self.header_printed = False
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        if start_epoch:
            self.console.print(f"resuming after epoch {start_epoch} of {epochs}")
        self.task = self.progress.add_task("train", total=batches, epoch=start_epoch + 1, epochs=epochs)

    def batch_end(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)

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
            self.progress.reset(self.task, total=self.batches, epoch=record.epoch + 1, epochs=self.epochs)

    def fit_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
