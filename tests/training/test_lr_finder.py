from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.lr_finder import LRFind
from training.lr_suggestions import RULES, SKIP_END, minimum, slide, steep, suggest, trimmed, valley

from .learners import tiny_learner


def sweep_with_a_noisy_start(seed: int = 0) -> tuple[list[float], list[float]]:
    """A sweep shaped like a real one: flat to 1e-3 but with a steep spurious drop among its first
    points (the smoothed loss of a few batches), a fall to a minimum near 2e-2, divergence past 0.1."""
    lrs = np.logspace(-7, 1, 100)
    x = np.log10(lrs)
    losses = 0.7 - 0.45 / (1 + np.exp(-(x + 2.4) * 4)) + np.where(x > -1.5, (x + 1.5) ** 2 * 2, 0)
    losses = losses + np.random.default_rng(seed).normal(0, 0.004, len(x))
    losses[:6] += [0.3, 0.0, 0.1, 0.01, 0.0, 0.0]  # the noisy start
    return lrs.tolist(), losses.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_valley_suggests_a_rate_on_the_fall_not_in_the_noisy_start(seed: int) -> None:
    lrs, losses = sweep_with_a_noisy_start(seed)
    suggestions = suggest(lrs, losses, num_it=100)
    assert 3e-4 <= suggestions["valley"] <= 2e-2
    assert 1e-4 <= suggestions["steep"] <= 2e-2
    assert 3e-4 <= suggestions["minimum"] <= 1e-2
    assert 1e-5 <= suggestions["slide"] <= 5e-2


def test_a_recorded_sweep_of_the_demo_scenes_gets_rates_on_its_fall() -> None:
    """The sweep `train-kit lr-find` recorded on the demo scenes (resnet18, 64 px, from scratch):
    a plateau to ~1e-5, a fall to the lowest loss near 0.1, then divergence. Every rule's rate is
    on the fall: below the plateau's loss, at or before the lowest point."""
    sweep = json.loads((Path(__file__).parent / "sweeps" / "scenes_resnet18_64.json").read_text())
    lrs, losses = sweep["lrs"], sweep["losses"]
    suggestions = suggest(lrs, losses, num_it=100)
    plateau = float(np.mean(losses[:10]))
    lowest = lrs[int(np.argmin(losses))]
    for name, rate in suggestions.items():
        at = float(np.interp(np.log(rate), np.log(lrs), losses))
        assert 1e-4 <= rate <= lowest and at < plateau - 0.01, (name, rate, at)


def test_every_rule_reads_a_clean_curve_where_it_should() -> None:
    lrs = np.logspace(-6, 0, 100)
    x = np.log10(lrs)
    losses = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 5, 0)
    rates, values = trimmed(lrs.tolist(), losses.tolist(), num_it=100)
    assert len(rates) == 100 - 10 - SKIP_END
    assert steep(rates, values) == pytest.approx(1e-3, rel=0.15)  # the sigmoid's steepest point
    assert minimum(rates, values) == pytest.approx(lrs[int(np.argmin(losses))] / 10)
    assert 1e-4 <= valley(rates, values) <= 1e-2
    assert slide(rates, values) <= lrs[int(np.argmin(losses))]


def test_a_short_sweep_is_read_whole_and_an_unknown_rule_is_refused() -> None:
    lrs, losses = [1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.8, 0.5, 2.0]
    assert set(suggest(lrs, losses, num_it=4)) == set(RULES)
    with pytest.raises(ValueError, match="at least 3"):
        trimmed([1e-3], [1.0], num_it=1)
    with pytest.raises(ValueError, match="choose one of valley, steep, minimum, slide"):
        LRFind(lrs, losses, suggest(lrs, losses, num_it=4), rule="fastest")


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


def test_valley_does_not_move_with_where_the_sweep_starts() -> None:
    """fastai's valley (the run's middle by index) moves left as the plateau lengthens; half the
    fall stays put, so `--start-lr` does not change the advice."""
    sweep = json.loads((Path(__file__).parent / "sweeps" / "scenes_resnet18_64.json").read_text())
    whole = suggest(sweep["lrs"], sweep["losses"], num_it=100)["valley"]
    later = suggest(sweep["lrs"][30:], sweep["losses"][30:], num_it=70)["valley"]
    assert later == pytest.approx(whole, rel=0.5)
