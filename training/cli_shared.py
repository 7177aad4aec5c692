"""What every `train-kit` command shares: the consoles, and how a user's error is shown."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from training.errors import TrainingError

__all__ = ["console", "err_console", "user_errors"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A `TrainingError` is the user's to fix: print it plainly, exit 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TrainingError as err:
            err_console.print(f"[red]error:[/red] {escape(str(err))}")
            raise typer.Exit(2) from None

    return wrapper
