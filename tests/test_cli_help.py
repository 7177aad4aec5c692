"""Every command of both CLIs answers --help (help texts hold brackets such as `[/<version>]`)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from serving.cli import app as serve_kit
from training.cli import app as train_kit


def commands(app: typer.Typer) -> list[list[str]]:
    """The argument path of every command and group, e.g. ["data", "pose"]."""

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():  # a group's commands
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize(
    ("app", "path"),
    [(app, path) for app in (train_kit, serve_kit) for path in commands(app)],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_every_command_answers_help(app: typer.Typer, path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
