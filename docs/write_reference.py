"""Write `docs/reference.md`: every `train-kit` and `serve-kit` command with its flags, and every
serve-kit setting, read from the code (the typer apps and the pydantic models), so the one place
each is documented cannot drift. `tests/test_docs.py` fails when the committed page is stale.

Run `python docs/write_reference.py` (or `make docs`) after changing a flag or a setting.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, get_args

import typer.main
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference.md"

HEADER = """# Reference: every command, flag and setting

Generated from the code by `python docs/write_reference.py` (`make docs`); a test fails when it is stale.
Each flag of `train-kit` and each setting of `serve-kit` is described here, and only here; the other
pages show them at work.

`train-kit train <task>` and `lr-find <task>` read that task's options (its settings class in
`training/tasks/<task>.py`, on the shared ones of `training/config.py`): each flag is also a key of a
`--config` TOML file (flags win), a key the task does not read is refused, and a flag's default is
the task's own (its run folder is `runs/<task>`). `finetune` reads the task of the bundle it tunes.
"""


def generate() -> str:
    from serving.cli import app as serve_kit
    from serving.server.settings import ServerSettings
    from training.cli import app as train_kit

    lines = [HEADER]
    for cli, app in (("train-kit", train_kit), ("serve-kit", serve_kit)):
        lines.append(f"## `{cli}`\n")
        for path, command in _commands(typer.main.get_command(app), [cli]):
            lines += _command(path, command)
    lines.append("## serve-kit settings\n")
    lines.append(
        "Defaults < a TOML or YAML file (`--config`, `SERVE_CONFIG_FILE`) < `SERVE_*` environment "
        "variables < flags. Nested keys use `__` in variables (`SERVE_BATCHING__MAX_BATCH_SIZE`) and "
        "tables in the file; `[models.<name>]` tables override one model. `serve-kit settings` prints "
        "what a server would run with.\n"
    )
    lines.append("| setting | variable | default | meaning |")
    lines.append("| --- | --- | --- | --- |")
    lines += _settings(ServerSettings, [])
    return "\n".join(lines) + "\n"


def _commands(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    if hasattr(command, "commands"):
        return [found for name, sub in command.commands.items() for found in _commands(sub, [*path, name])]
    return [(path, command)]


def _command(path: list[str], command: Any) -> list[str]:
    arguments = " ".join(
        p.name.upper() for p in command.params if not hasattr(p, "opts") or not _is_option(p)
    )
    summary = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"### `{' '.join(path)}`{' ' + arguments if arguments else ''}\n", f"{summary}\n"]
    options = [p for p in command.params if _is_option(p)]
    if options:
        lines += ["| flag | default | meaning |", "| --- | --- | --- |"]
        for option in options:
            flag = " / ".join(f"`{o}`" for o in [*option.opts, *option.secondary_opts])
            default = option.default
            if isinstance(option.show_default, str):  # flags made from a model's fields say their defaults so
                default = option.show_default
            meaning = option.help or ""
            lines.append(f"| {flag} | {_shown(default)} | {_cell(meaning)} |")
        lines.append("")
    return lines


def _is_option(param: Any) -> bool:
    return type(param).__name__.endswith("Option")


def _settings(model: type[BaseModel], prefix: list[str]) -> list[str]:
    """One row per setting; a nested model's fields under its key (`models` per model: file only)."""
    rows = []
    for name, field in model.model_fields.items():
        key = [*prefix, name]
        nested = _nested_model(field.annotation)
        if nested is not None:
            rows += _settings(nested, [*key, "<name>"] if name == "models" else key)
            continue
        default = field.get_default(call_default_factory=True)
        variable = f"`SERVE_{'__'.join(key).upper()}`" if "<name>" not in key else "file only"
        meaning = _cell(field.description or "")
        rows.append(f"| `{'.'.join(key)}` | {variable} | {_shown(default)} | {meaning} |")
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds: directly, optionally, or as a dict's values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None


def _shown(value: Any) -> str:
    if value is None or value is PydanticUndefined or value == [] or value == ():
        return ""
    if isinstance(value, BaseModel):
        return ""
    return f"`{value}`"


def _cell(text: str) -> str:
    """One table cell: one line, with the characters Markdown would read as table or HTML escaped."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def main() -> None:
    PAGE.write_text(generate())
    print(PAGE, file=sys.stderr)


if __name__ == "__main__":
    main()
