"""The CLI's progress: a bar within each epoch (batches, time left, running loss), a row per epoch."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from training.progress import RichReporter

from .learners import tiny_learner


def test_a_fit_shows_batches_and_the_running_loss_within_each_epoch(tag_images: Path, tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    reporter = RichReporter(console)
    reporter.loss_read_at = float("-inf")  # read at once, so a fit of a second shows it
    learn = tiny_learner(tag_images, tmp_path, reporter=reporter)
    learn.fit_one_cycle(2, 1e-2)
    shown = screen.getvalue()
    assert "epoch 1/2" in shown and "epoch 2/2" in shown
    assert "loss 0." in shown or "loss 1." in shown  # the running loss beside the bar
    assert "train_loss" in shown  # the table's header, then one row per epoch
