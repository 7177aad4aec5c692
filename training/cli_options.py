"""The flags of a command made from a pydantic model's fields: one definition per option.

Each field is a flag (`max_rotate` → `--max-rotate`, a bool → `--x/--no-x`), its help is the field's
`description` and its shown default the field's (a task's settings class holds the task's own). A
flag that is not given arrives as None, so a `--config` file or the default decides. `config_command`
registers a function of a task's options as a typer command with these flags (and `--config`) beside
its own; `options_command` does the same for any model (a demo data set's options).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from training.cli_shared import user_errors
from training.config import TrainConfig, load_config
from training.errors import ConfigError

__all__ = ["config_command", "model_flags", "option", "options_command"]

FLAG_DECLS = {
    "do_flip": "--flip/--no-flip",
    "fp16": "--fp16/--fp32",
    "unfreeze": "--unfreeze/--freeze",
    "resume": "--resume",
}
"""Flags whose names are not the field's: fastai's words, or a switch that only turns on."""


def model_flags(model: type[BaseModel], skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per field of `model` (but `task` and `skip`), typed for typer: the
    data folder first, then the model's own options before those it shares with others."""
    skipped = {"task", *skip}
    fields = model.model_fields
    return [_flag(name, fields[name]) for name in _own_first(model) if name not in skipped]


def _own_first(model: type[BaseModel]) -> list[str]:
    """Field names by the class that declares them, the most derived first (`data` leads)."""
    declared = [name for cls in model.__mro__ for name in vars(cls).get("__annotations__", {})]
    names = dict.fromkeys(["data", *declared])
    return [name for name in names if name in model.model_fields]


def _flag(name: str, field: FieldInfo) -> inspect.Parameter:
    kind = _cli_type(field.annotation)
    dashed = "--" + name.replace("_", "-")
    decl = FLAG_DECLS.get(name) or (f"{dashed}/--no-{dashed[2:]}" if kind is bool else dashed)
    return option(name, kind | None, None, field.description or "", decl=decl, show_default=_shown(field))


def option(
    name: str, kind: Any, default: Any, help: str, *, decl: str | None = None, show_default: str | bool = True
) -> inspect.Parameter:
    """A keyword parameter typer reads as `--name` (or `decl`): a config flag, or a command's own."""
    flag = typer.Option(decl or "--" + name.replace("_", "-"), help=help, show_default=show_default)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, flag]
    )


def _cli_type(annotation: Any) -> Any:
    """The type a flag parses: lists stay lists (repeatable flags); unions and literals become their
    plain type or `str`, which the config then validates (`lr`'s `low:high` included)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is list:
        return list[str]
    if annotation in (bool, int, float, str, Path):
        return annotation
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    return str


def _shown(field: FieldInfo) -> str | bool:
    """The default as help shows it (none where there is none to show)."""
    default = field.default
    if default in (None, PydanticUndefined) or default == []:
        return False
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, str) and not default.strip():
        return repr(default)
    if isinstance(default, list):
        return " ".join(map(str, default))
    return str(default)


def config_command(
    app: typer.Typer,
    name: str,
    run: Callable[..., None],
    settings: type[TrainConfig],
    *,
    own: list[inspect.Parameter] = (),  # type: ignore[assignment]
    skip: Iterable[str] = (),
    help: str | None = None,
) -> None:
    """Register `run(cfg, **own)` as `name`: `--config`, a flag for every option of `settings` not in
    `skip`, then the command's `own` parameters."""
    own_names = [p.name for p in own]

    def command(**given: Any) -> None:
        extras = {key: given.pop(key) for key in own_names}
        run(load_config(settings, given.pop("config"), given), **extras)

    config = Annotated[Path | None, typer.Option("--config", help="TOML file of options; flags override it")]
    head = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config)
    _register(app, name, command, [head, *model_flags(settings, skip), *own], help or run.__doc__)


def options_command(
    app: typer.Typer, name: str, run: Callable[[Any], None], options: type[BaseModel], help: str | None
) -> None:
    """Register `run(options)` as `name`, with a flag for every field of `options`."""

    def command(**given: Any) -> None:
        try:
            chosen = options.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as err:
            raise ConfigError(str(err)) from None
        run(chosen)

    _register(app, name, command, model_flags(options), help)


def _register(
    app: typer.Typer,
    name: str,
    command: Callable[..., None],
    params: list[inspect.Parameter],
    help: str | None,
) -> None:
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name.replace("-", "_")
    app.command(name, help=help)(user_errors(command))
