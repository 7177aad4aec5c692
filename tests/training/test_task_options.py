"""Each task's options are its own: `train-kit train <task> --help` lists them and no other task's,
its run folder is `runs/<task>`, and a TOML key another task reads is refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from training.cli import app
from training.config import TrainConfig
from training.tasks import TASKS

runner = CliRunner()


def own_options(settings: type[TrainConfig]) -> set[str]:
    """The options a task's settings declare that not every task's settings have."""
    shared = set.intersection(*(set(task.settings.model_fields) for task in TASKS.values()))
    return set(settings.model_fields) - shared


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def command_of(*path: str) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def flags_of(*path: str) -> set[str]:
    """Every flag the command takes, as typed (`--flip`, `--no-flip`)."""
    return {opt for p in command_of(*path).params for opt in [*p.opts, *p.secondary_opts]}


def options_of(*path: str) -> set[str]:
    """The option each flag sets (`do_flip`)."""
    return {p.name for p in command_of(*path).params}


@pytest.mark.parametrize("task", list(TASKS))
def test_train_help_lists_the_tasks_own_options_and_no_other_tasks(task: str) -> None:
    result = runner.invoke(app, ["train", task, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    flags, options = flags_of("train", task), options_of("train", task)
    settings = TASKS[task].settings
    assert set(settings.model_fields) - {"task"} <= options
    for other in TASKS.values():
        for name in own_options(other.settings) - set(settings.model_fields):
            assert name not in options and flag(name) not in flags, f"{task} shows {other.name}'s {name}"
            assert flag(name) not in result.output, f"{task}'s help names {other.name}'s {name}"


def test_help_shows_neither_text_options_for_images_nor_image_options_for_text() -> None:
    multilabel = runner.invoke(app, ["train", "multilabel", "--help"], terminal_width=200).output
    assert "--vocabulary" not in multilabel and "--max-tokens" not in multilabel
    assert "--void" not in multilabel and "--points" not in multilabel  # other image tasks' own
    sentiment = runner.invoke(app, ["train", "sentiment", "--help"], terminal_width=200).output
    assert "--size" not in sentiment and "--weights" not in sentiment and "resnet" not in sentiment
    assert "--max-tokens" in sentiment and "[default: (ngram)]" in sentiment


@pytest.mark.parametrize("task", list(TASKS))
def test_the_default_run_folder_is_runs_slash_the_task(task: str, tmp_path: Path) -> None:
    settings = TASKS[task].settings
    assert settings(data=tmp_path).out == Path("runs") / task
    said = " ".join(runner.invoke(app, ["train", task, "--help"], terminal_width=200).output.split())
    assert f"[default: (runs/{task})]" in said


def test_train_classify_without_out_writes_into_runs_classify(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[TrainConfig] = []

    def run_training(cfg: TrainConfig, reporter: object = None) -> dict[str, object]:
        seen.append(cfg)
        return {}

    monkeypatch.setattr("training.run.run_training", run_training)
    result = runner.invoke(app, ["train", "classify", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen[0].out == Path("runs/classify")


@pytest.mark.parametrize("task", list(TASKS))
def test_a_toml_key_of_another_task_is_refused_by_name(task: str, tmp_path: Path) -> None:
    settings = TASKS[task].settings
    others = {name for other in TASKS.values() for name in own_options(other.settings)}
    key = sorted(others - set(settings.model_fields))[0]
    config = tmp_path / "run.toml"
    config.write_text(f'data = "{tmp_path}"\n{key} = 1\n')
    result = runner.invoke(app, ["train", task, "--config", str(config)], terminal_width=200)
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert f"unknown key '{key}'" in said and f"not a {task} option" in said


def test_a_file_for_another_task_says_so() -> None:
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="the file is for task 'pose', this command trains multilabel"):
        TASKS["multilabel"].load_config(None, {"task": "pose", "data": "d"})


def test_a_saved_config_keeps_what_the_task_reads_and_drops_other_tasks_keys(tmp_path: Path) -> None:
    """Checkpoints from before each task had its own options hold every task's keys."""
    old = {"data": str(tmp_path), "thresh": 0.3, "vocab_size": 100, "void": "Void", "size": 48}
    cfg = TASKS["multilabel"].saved_config(old)
    assert (cfg.task, cfg.size, cfg.thresh) == ("multilabel", 48, 0.3)


@pytest.mark.parametrize("task", list(TASKS))
def test_each_tasks_settings_name_it_and_its_data_command_exists(task: str) -> None:
    training = TASKS[task]
    assert training.settings.task_name() == task
    if training.demo_data is not None:
        assert "--out" in flags_of("data", task)
