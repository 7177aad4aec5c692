from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.lr_finder import steepest_lr

from .learners import tiny_learner


def test_suggestion_is_where_a_known_loss_curve_falls_fastest() -> None:
    lrs = np.logspace(-7, 1, 200)
    # A smooth drop centred at lr = 1e-3 (steepest there), then divergence past 1e-1.
    x = np.log10(lrs)
    losses = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 5, 0)
    suggestion = steepest_lr(lrs.tolist(), losses.tolist())
    assert suggestion == pytest.approx(1e-3, rel=0.15)


def test_the_divergent_tail_never_wins_the_suggestion() -> None:
    lrs = np.logspace(-5, 0, 50).tolist()
    losses = [1.0 - 0.01 * i for i in range(40)] + [0.6 - 0.5 * i for i in range(10)]
    losses[40:] = [0.61 + 2.0 * i for i in range(10)]  # explodes after the minimum
    assert steepest_lr(lrs, losses) <= lrs[39]


def test_lr_find_sweeps_exponentially_and_restores_the_weights(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    found = learn.lr_find(start_lr=1e-5, end_lr=1.0, num_it=12, stop_div=False)
    assert len(found.lrs) == 12
    assert found.lrs[0] == pytest.approx(1e-5) and found.lrs[-1] == pytest.approx(1.0)
    ratios = np.diff(np.log(found.lrs))
    assert np.allclose(ratios, ratios[0])
    assert found.lrs[0] <= found.suggestion <= found.lrs[-1]
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    png = found.plot(tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_stops_when_the_loss_diverges(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    found = learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=60)
    assert len(found.lrs) < 60
