"""lr-find's suggestion, proven by training: on the demo scenes and on a second data set, a short
run at the suggested rate clearly beats the trivial baseline (always the frequent tags) and comes
near the best rate of a small grid. A suggestion from the sweep's noisy start (1e-7-ish) trains
nothing and fails this. The network is the test learner's small CNN, so the runs take seconds.

The gauge is the validation loss gained over the baseline's: F2 at a fixed threshold rewards an
untrained network whose scores all sit near 0.5 (it says every tag), so it cannot rank rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.demo.scenes import build_multilabel_scenes
from training.metrics import frequency_logits

from .demo.fakes import write_fake_fashion_mnist
from .learners import tiny_learner

GRID = (1e-3, 1e-2, 1e-1)
EPOCHS = 3


def demo_scenes(root: Path) -> Path:
    write_fake_fashion_mnist(root / "fm", n_train=60, n_test=20)
    build_multilabel_scenes(root / "scenes", n_train=128, n_valid=64, size=64, root=root / "fm")
    return root / "scenes"


@pytest.mark.parametrize("dataset", ["demo scenes", "colour tags"])
def test_a_short_run_at_the_suggested_rate_beats_the_baseline_and_nears_the_best_of_a_grid(
    dataset: str, tag_images: Path, tmp_path: Path
) -> None:
    data = demo_scenes(tmp_path) if dataset == "demo scenes" else tag_images
    found = tiny_learner(data, tmp_path).lr_find(num_it=60)

    def gain(lr: float) -> float:
        """Validation loss below the always-the-frequent-tags baseline's after a short one-cycle run."""
        learn = tiny_learner(data, tmp_path)
        learn.fit_one_cycle(EPOCHS, max_lr=lr)
        preds, targets = learn.get_preds()
        trivial = frequency_logits(learn.data.src.y_train, targets)
        return float(learn.loss_func(trivial, targets) - learn.loss_func(preds, targets))

    suggested, grid = gain(found.suggestion), {lr: gain(lr) for lr in GRID}
    best = max(grid.values())
    shown = (found.suggestions, suggested, grid)
    assert best > 0.05, shown  # the grid itself learns something: the test can tell rates apart
    assert suggested > 0.5 * best, shown  # clearly past the baseline
    assert suggested >= 0.8 * best, shown  # within reach of the grid's best
