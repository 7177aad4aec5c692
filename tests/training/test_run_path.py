"""The one run path: every task plans stages, one runner fits, resumes, saves and scores each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tests.training.learners import tiny_learner
from training.checkpoint import load_checkpoint
from training.cli import app
from training.errors import ConfigError
from training.learner import Learner
from training.metrics import frequency_logits
from training.sentiment import majority_logits
from training.stages import BaselineModel, OneCycle, Stage, run_stages
from training.tasks import TASKS, TrainingTask
from training.tasks.multilabel import MultilabelConfig


def two_stage_plan(tag_images: Path, out: Path, previews: list[Path]) -> list[Stage]:
    """The head over a frozen body, then everything: one learner, two stages (as sentiment thaws)."""
    learn = tiny_learner(tag_images, out)
    src = learn.data.src
    baseline = BaselineModel(frequency_logits, src.y_train, src.y_valid)

    def preview(_data: Any, path: Path) -> None:
        previews.append(path)

    def report(learn: Learner[Any]) -> dict[str, Any]:
        return {"frozen_groups": learn.n_frozen}

    return [
        Stage(
            "head", learn, OneCycle(1, 1e-2), freeze_to=-1, baseline=baseline, report=report, preview=preview
        ),
        Stage("all", learn, OneCycle(1, slice(1e-4, 1e-3)), freeze_to=0, baseline=baseline, report=report),
    ]


def test_each_stage_writes_its_checkpoint_metrics_and_plot(tag_images: Path, tmp_path: Path) -> None:
    previews: list[Path] = []
    result = run_stages(two_stage_plan(tag_images, tmp_path, previews), MultilabelConfig(data=tag_images))
    assert previews == [tmp_path / "head.batch.png"]  # drawn where the stage asks, on a fresh run
    for stage, frozen, epochs in (("head", 2, 1), ("all", 0, 2)):
        metrics = json.loads((tmp_path / f"{stage}.metrics.json").read_text())
        assert (tmp_path / f"{stage}.curves.png").read_bytes()[:4] == b"\x89PNG"
        assert load_checkpoint(tmp_path / f"{stage}.pt")["complete"]
        assert metrics["stage"] == stage and metrics["epochs"] == epochs == len(metrics["history"])
        assert set(metrics["baseline"]) == set(metrics["metrics"]) == {"accuracy_thresh", "fbeta"}
        assert metrics["frozen_groups"] == frozen and metrics["config"]["task"] == "multilabel"
    assert result == json.loads((tmp_path / "all.metrics.json").read_text())  # the run's: its last stage's


def test_a_resumed_plan_loads_finished_stages_and_starts_missing_ones_afresh(
    tag_images: Path, tmp_path: Path
) -> None:
    run_stages(two_stage_plan(tag_images, tmp_path, []), MultilabelConfig(data=tag_images))
    head = (tmp_path / "head.pt").read_bytes()
    (tmp_path / "all.pt").unlink()  # the run died before the second stage saved an epoch
    previews: list[Path] = []
    cfg = MultilabelConfig(data=tag_images, resume=True)
    result = run_stages(two_stage_plan(tag_images, tmp_path, previews), cfg)
    assert (tmp_path / "head.pt").read_bytes() == head  # finished: loaded, not fitted again
    assert previews == [] and result["epochs"] == 2 and load_checkpoint(tmp_path / "all.pt")["complete"]
    with pytest.raises(ConfigError, match=r"--resume: no checkpoint .*head\.pt"):
        run_stages(two_stage_plan(tag_images, tmp_path / "empty", []), cfg)


def test_every_task_plans_its_own_stages_and_none_runs_beside_the_runner() -> None:
    for task in TASKS.values():
        assert type(task).stages is not TrainingTask.stages, task.name
        assert not hasattr(task, "recipe"), task.name  # no run path of its own
    assert {name for name, task in TASKS.items() if not task.sweeps_rates} == {"sentiment"}


def test_the_sentiment_baseline_is_the_majority_class() -> None:
    logits = majority_logits(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 1]))
    assert logits.argmax(1).tolist() == [1, 1, 1] and logits.shape == (3, 3)


@pytest.mark.parametrize("command", [["export"], ["save-body", "body.pt"]])
def test_commands_that_read_a_run_ask_for_its_folder(command: list[str]) -> None:
    """No task's run folder is everyone's default: the run to read is named."""
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and "Missing option '--out'" in result.output
    said = " ".join(CliRunner().invoke(app, [command[0], "--help"], terminal_width=200).output.split())
    assert "runs/multilabel" not in said and "runs/classify" not in said and "[required]" in said
