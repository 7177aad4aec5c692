"""The plots people look at rather than read: `<stage>.curves.png` beside each metrics JSON, and
`train-kit predict --show`'s answers drawn on the images.

The runs and bundles are the session's (`tests/conftest.py`), which other tests train and export
anyway; the figure each drawing returns is what the panel counts are read from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

import training.show_answers
from training.cli import app
from training.curves import plot_curves

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def epochs(*numbers: int, metrics: tuple[str, ...] = ("accuracy",)) -> list[dict[str, Any]]:
    """History rows as the metrics JSON holds them, with losses falling and metrics rising."""
    return [
        {"epoch": n, "train_loss": 1 / i, "valid_loss": 1.2 / i, "metrics": dict.fromkeys(metrics, i / 20)}
        for i, n in enumerate(numbers, start=1)
    ]


@pytest.mark.parametrize(
    "metrics",
    [("accuracy_thresh", "fbeta"), ("accuracy",), ("pixel_accuracy", "mean_iou"), ("mean_pixel_error",)],
)
def test_curves_have_a_loss_panel_and_one_per_metric_beside_its_baseline(
    metrics: tuple[str, ...], tmp_path: Path
) -> None:
    result = {
        "stage": "stage-1",
        "baseline": dict.fromkeys(metrics, 0.25),
        "history": epochs(1, 2, 3, metrics=metrics),
    }
    fig = plot_curves(result, tmp_path / "stage-1.curves.png")
    assert len(fig.axes) == 1 + len(metrics)
    loss, *panels = fig.axes
    assert [(line.get_label(), np.size(line.get_xdata())) for line in loss.get_lines()] == [
        ("train", 3),
        ("valid", 3),
    ]
    for ax, name in zip(panels, metrics, strict=True):
        assert ax.get_title() == name
        curve, baseline = ax.get_lines()
        assert np.asarray(curve.get_ydata()).tolist() == [r["metrics"][name] for r in result["history"]]
        assert np.asarray(baseline.get_ydata()).tolist() == [0.25, 0.25] and baseline.get_linestyle() == "--"
    assert (tmp_path / "stage-1.curves.png").read_bytes()[:8] == PNG


def test_a_resumed_or_gradually_unfrozen_history_is_drawn_whole_with_each_new_fit_marked(
    tmp_path: Path,
) -> None:
    """Sentiment's `clf-1`, `clf-2`, `clf` share one history whose epoch count restarts."""
    result = {"stage": "clf", "baseline": {"accuracy": 0.5}, "history": epochs(1, 1, 1, 2, 3)}
    fig = plot_curves(result, tmp_path / "clf.curves.png")
    for ax in fig.axes:
        lines = ax.get_lines()
        restarts = [np.asarray(line.get_xdata())[0] for line in lines if line.get_linestyle() == ":"]
        assert restarts == [1.5, 2.5]
        assert all(np.size(line.get_xdata()) == 5 for line in lines if line.get_linestyle() == "-")


@pytest.mark.parametrize(
    ("run", "stage", "panels"),
    [
        ("trained_run", "stage-1", 3),
        ("seg_run", "stage-1", 3),
        ("pose_run", "stage-1", 2),
        ("sentiment_run", "clf", 2),
    ],
)
def test_every_tasks_training_writes_its_curves_beside_its_metrics(
    run: str, stage: str, panels: int, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(run)
    metrics = json.loads((folder / f"{stage}.metrics.json").read_text())
    assert 1 + len(metrics["metrics"]) == panels
    path = folder / f"{stage}.curves.png"
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.size == (400 * panels, 300)  # one 4×3-inch panel per loss group and metric, at 100 dpi


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures `predict --show` draws, kept as the CLI returns them."""
    figures: list[Figure] = []
    draw: Callable[..., Figure] = training.show_answers.show_answers

    def spy(*args: Any, **kwargs: Any) -> Figure:
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(training.show_answers, "show_answers", spy)
    return figures


def show(bundle: Path, images: list[Path], target: Path) -> list[dict[str, Any]]:
    """Run `train-kit predict ... --show target`; its JSON answers."""
    result = runner.invoke(app, ["predict", str(bundle), *map(str, images), "--show", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == PNG and target.stat().st_size > 5_000
    return [json.loads(line) for line in result.output.splitlines()]


def test_predict_show_titles_each_image_with_its_tags_and_scores(
    bundle_path: Path, tag_images: Path, drawn: list[Figure], tmp_path: Path
) -> None:
    images = sorted((tag_images / "train").glob("*.jpg"))[-3:]
    answers = show(bundle_path, images, tmp_path / "tags.png")
    (fig,) = drawn
    assert len(fig.axes) == len(images) == len(answers)
    for ax, image, answer in zip(fig.axes, images, answers, strict=True):
        name, tags = ax.get_title().split("\n")
        assert name == image.name
        assert tags == "  ".join(f"{t} {answer['scores'][t]:.2f}" for t in answer["labels"]) or (
            not answer["labels"] and tags == "(no label over its threshold)"
        )


def test_predict_show_blends_each_mask_with_a_legend_of_its_classes(
    seg_bundle: Path, seg_images: Path, drawn: list[Figure], tmp_path: Path
) -> None:
    images = sorted((seg_images / "images").glob("*.png"))[-2:]
    answers = show(seg_bundle, images, tmp_path / "masks.png")
    (fig,) = drawn
    assert len(fig.axes) == len(images)
    for ax, answer in zip(fig.axes, answers, strict=True):
        assert len(ax.get_images()) == 2  # the image, and its mask over it
        legend = ax.get_legend()
        named = {text.get_text() for text in legend.get_texts()} if legend else set()
        assert named == set(answer["classes"]) - {"Background"}


def test_predict_show_crosses_and_names_each_point(
    pose_bundle: Path, point_images: Path, drawn: list[Figure], tmp_path: Path
) -> None:
    images = sorted((point_images / "images").glob("*.png"))[-2:]
    answers = show(pose_bundle, images, tmp_path / "points.png")
    (fig,) = drawn
    assert len(fig.axes) == len(images)
    for ax, answer in zip(fig.axes, answers, strict=True):
        (crosses,) = ax.collections
        (point,) = answer["points"]
        crossed = np.asarray(crosses.get_offsets()).ravel().tolist()
        assert crossed == pytest.approx([point["x"] - 0.5, point["y"] - 0.5])
        assert [text.get_text() for text in ax.texts] == ["centre"]


def test_predict_show_refuses_a_text_model_plainly(sentiment_bundle: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(sentiment_bundle), "a superb film", "--show", str(tmp_path / "t.png")]
    )
    assert result.exit_code == 2
    assert "--show draws on images" in result.output and "text model" in result.output
    assert not (tmp_path / "t.png").exists()
