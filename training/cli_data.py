"""`train-kit data <task>`: build a task's demo data set from data that ships in packages; each task
says what it builds (`TrainingTask.demo_data`), with its options as flags."""

from __future__ import annotations

import typer

from training.cli_options import options_command
from training.cli_shared import console
from training.tasks import TASKS
from training.tasks.demo_data import DemoData

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Build demo data sets from data that ships in packages.", no_args_is_help=True, rich_markup_mode=None
)


def build(options: DemoData) -> None:
    """Write the data set and say what was written."""
    console.print(options.build())


for task in TASKS.values():
    if task.demo_data is not None:
        for name in (task.name, *task.demo_data.older_names):
            options_command(data_app, name, build, task.demo_data, task.demo_data.__doc__)
