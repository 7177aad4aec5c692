"""User data as it comes: every config key is a flag of each command that reads it, and data sets laid
out the plain way (own folder and column names, no void code, x/y columns, left/right points) train
from flags alone: no config file, no renaming."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer.main
from PIL import Image
from typer.testing import CliRunner

from training.cli import LR_FIND_SKIPS, app
from training.run import use_threads
from training.tasks import TASKS
from training.tasks.multilabel import MultilabelConfig

runner = CliRunner()
FAST = [
    "--arch",
    "resnet18",
    "--no-pretrained",
    "--size",
    "32",
    "--bs",
    "4",
    "--epochs",
    "1",
    "--num-workers",
    "0",
]


def flags_of(*path: str) -> set[str]:
    click_command: Any = typer.main.get_command(app)
    for name in path:
        click_command = click_command.commands[name]
    return {p.name for p in click_command.params if type(p).__name__.endswith("Option")}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_config_key_is_a_flag_of_each_command_that_reads_it(task: str) -> None:
    training = TASKS[task]
    keys = set(training.settings.model_fields) - {"task"}
    assert keys <= flags_of("train", task)
    if training.sweeps_rates:  # a task whose options build one learner has a learning rate sweep
        assert keys - LR_FIND_SKIPS <= flags_of("lr-find", task)
    for older in training.older_commands:
        assert keys <= flags_of(older)
    for name, field in training.settings.model_fields.items():
        assert name == "task" or field.description, f"{name} has no description: its flag would say nothing"


def test_help_shows_each_default_and_each_tasks_own() -> None:
    for command in (["sentiment"], ["train", "sentiment"]):
        result = runner.invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "[default: (32)]" in result.output  # sentiment's own batch size
        assert "--weights" not in result.output  # an image-only key is not a sentiment flag
        assert "[default: (ngram)]" in result.output  # sentiment's own network
    result = runner.invoke(app, ["train", "multilabel", "--help"], terminal_width=200)
    assert "[default: (64)]" in result.output and "--flip / --no-flip" in result.output
    said = " ".join(result.output.split())  # rich wraps a long default inside its help column
    assert "[default: (efficientnet_lite0)]" in said and "sentiment" not in said  # no other task's


def write_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"pic{i}.png")
        names.append(f"pic{i}")
    return names


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def train(args: list[str], out: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["train", *args, *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "stage-1.metrics.json").read_text())


def test_a_plain_multilabel_set_with_its_own_names_and_a_subset(tmp_path: Path) -> None:
    names = write_images(tmp_path / "pictures", 24)
    rows = [{"file": n, "labels": "cat;dog" if i % 2 else "cat"} for i, n in enumerate(names)]
    write_csv(tmp_path / "annotations.csv", rows)
    args = ["multilabel", "--data", str(tmp_path), "--csv", "annotations.csv", "--folder", "pictures"]
    args += ["--suffix", ".png", "--image-col", "file", "--label-col", "labels", "--label-delim", ";"]
    metrics = train([*args, "--valid-pct", "0.25", "--max-train", "8", "--max-valid", "4"], tmp_path / "run")
    assert set(metrics["per_label"]) == {"cat", "dog"}
    assert sum(s["support"] for s in metrics["per_label"].values()) <= 2 * 4


def test_a_plain_segmentation_set_without_a_void_code(tmp_path: Path) -> None:
    names = write_images(tmp_path / "img", 8)
    (tmp_path / "masks").mkdir()
    for i, name in enumerate(names):
        mask = np.zeros((32, 32), np.uint8)
        mask[4 : 12 + i, 4:20] = 1
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    args = ["segmentation", "--data", str(tmp_path), "--folder", "img", "--codes", "classes.txt"]
    args += ["--mask-folder", "masks", "--mask-suffix", ".png", "--valid-pct", "0.25"]
    refused = runner.invoke(app, ["train", *args, *FAST, "--out", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "--void 'Void' is not one of the codes" in refused.output
    metrics = train(
        [*args, "--void", "none", "--batch-tfms"], tmp_path / "run"
    )  # masks move on the batch path
    assert metrics["config"]["void"] is None


def test_a_plain_pose_set_with_x_y_columns_and_left_right_points(tmp_path: Path) -> None:
    names = write_images(tmp_path / "faces", 8)
    rows = [{"name": n, "lx": 20 + i, "ly": 12, "rx": 10 - i / 2, "ry": 12} for i, n in enumerate(names)]
    write_csv(tmp_path / "eyes.csv", rows)
    args = ["pose", "--data", str(tmp_path), "--csv", "eyes.csv", "--folder", "faces", "--suffix", ".png"]
    args += [
        "--image-col",
        "name",
        "--points",
        "l",
        "--points",
        "r",
        "--x-col",
        "{point}x",
        "--y-col",
        "{point}y",
    ]
    args += ["--valid-pct", "0.25"]
    refused = runner.invoke(app, ["train", *args, *FAST, "--out", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "--flip-pairs l:r" in refused.output
    metrics = train([*args, "--flip-pairs", "l:r", "--batch-tfms"], tmp_path / "run")
    assert metrics["config"]["flip_pairs"] == ["l:r"]
    mixed = runner.invoke(app, ["train", *args, "--x-col", "x", *FAST, "--out", str(tmp_path / "x")])
    assert mixed.exit_code == 2 and "put {point} in them" in mixed.output


def test_threads_set_torchs_thread_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    use_threads(MultilabelConfig(data=tmp_path, threads=3))
    use_threads(MultilabelConfig(data=tmp_path))
    assert calls == [3]
