"""The flags of every command that reads a `TrainConfig`, made from its fields: one definition.

Each field is a flag (`max_rotate` → `--max-rotate`, a bool → `--x/--no-x`), its help is the field's
`description` and its shown default the config's (and each task's own, from `TASK_DEFAULTS`). A flag
that is not given arrives as None, so a `--config` file or the default decides. `config_command`
registers a function of a `TrainConfig` as a typer command with these flags beside its own.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from training.cli_shared import user_errors
from training.config import TASK_DEFAULTS, TrainConfig, load_config

__all__ = ["IMAGE_ONLY", "SENTIMENT_ONLY", "config_command", "config_flags", "option"]

FLAG_DECLS = {
    "do_flip": "--flip/--no-flip",
    "fp16": "--fp16/--fp32",
    "unfreeze": "--unfreeze/--freeze",
    "resume": "--resume",
}
"""Flags whose names are not the field's: fastai's words, or a switch that only turns on."""

SENTIMENT_ONLY = frozenset(
    {"text_col", "extra_csv", "vocabulary", "vocab_size", "max_tokens", "emb", "hidden", "layers", "bptt"}
    | {"lm_epochs", "lm_lr", "encoder", "ngram_buckets"}
)
"""Keys only sentiment reads."""
IMAGE_ONLY = frozenset(
    {"folder", "suffix", "image_col", "label_delim", "valid_list", "valid_pct", "codes", "void"}
    | {"mask_folder", "mask_suffix", "points", "x_col", "y_col", "flip_pairs", "weights", "pretrained"}
    | {"normalize", "size", "thresh", "do_flip", "flip_vert", "max_rotate", "max_zoom", "max_lighting"}
    | {"max_warp", "p_affine", "p_lighting", "unfreeze", "from_stage", "stage", "num_workers", "pct_start"}
    | {"channels_last", "compile", "batch_tfms"}
)
"""Keys only the image tasks read."""


def config_flags(skip: Iterable[str] = (), task: str | None = None) -> list[inspect.Parameter]:
    """One keyword parameter per `TrainConfig` field (but `task` and `skip`), typed for typer;
    defaults shown for `task` alone where the command has one."""
    skipped = {"task", *skip}
    fields = TrainConfig.model_fields.items()
    return [_flag(name, field, task) for name, field in fields if name not in skipped]


def _flag(name: str, field: FieldInfo, task: str | None) -> inspect.Parameter:
    kind = _cli_type(field.annotation)
    dashed = "--" + name.replace("_", "-")
    decl = FLAG_DECLS.get(name) or (f"{dashed}/--no-{dashed[2:]}" if kind is bool else dashed)
    shown = _shown_default(name, field, task)
    return option(name, kind | None, None, field.description or "", decl=decl, show_default=shown)


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


def _shown_default(name: str, field: FieldInfo, task: str | None) -> str | bool:
    """The default as help shows it: the config's, then each task's own (`bs: 64; sentiment: 32`),
    or the one task's where a command trains only that task."""
    if task is not None and name in TASK_DEFAULTS.get(task, {}):
        return _text(TASK_DEFAULTS[task][name])
    tasks = TASK_DEFAULTS.items() if task is None else ()
    per_task = [f"{other}: {_text(values[name])}" for other, values in tasks if name in values]
    default = field.default
    shown = [] if default in (None, PydanticUndefined) or default == [] else [_text(default)]
    return "; ".join(shown + per_task) or False


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and not value.strip():
        return repr(value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def config_command(
    app: typer.Typer,
    name: str,
    run: Callable[..., None],
    *,
    own: list[inspect.Parameter] = (),  # type: ignore[assignment]
    skip: Iterable[str] = (),
    task: str | None = None,
    task_type: type | None = None,
) -> None:
    """Register `run(cfg, **own)` as `name`: a TASK argument (unless `task` fixes it), `--config`,
    a flag for every config field not in `skip`, then the command's `own` parameters."""
    own_names = [p.name for p in own]

    def command(**given: Any) -> None:
        extras = {key: given.pop(key) for key in own_names}
        chosen = task or str(getattr(given["task"], "value", given["task"]))
        given["task"] = chosen
        cfg = load_config(given.pop("config"), given)
        run(cfg, **extras)

    head = []
    if task is None:
        head.append(inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=task_type))
    config = Annotated[Path | None, typer.Option("--config", help="TOML file of options; flags override it")]
    head.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config))
    params = [*head, *config_flags(skip, task), *own]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = run.__doc__
    command.__name__ = run.__name__
    app.command(name)(user_errors(command))
