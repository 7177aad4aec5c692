"""What every training run's options share, validated once at start-up (pydantic), from flags and/or a
TOML file.

`TrainConfig` holds the options every task reads; each task's settings class (`training.tasks.<task>`)
adds its own and sets its defaults (`defaults`, and the run folder `runs/<task>`), so a task's flags
and keys are exactly the options it reads.

`train-kit train <task> --config run.toml` reproduces a run; flags given beside it override the file.
A wrong key or type is a clear error naming the key, not a failure an hour into training.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from training.errors import ConfigError

__all__ = ["NoneWord", "TrainConfig", "load_config", "parse_lr"]

Config = TypeVar("Config", bound=BaseModel)


def _none_is_none(value: Any) -> Any:
    """'none' (any case) says there is no such thing: a flag cannot pass a null."""
    return None if isinstance(value, str) and value.lower() == "none" else value


NoneWord = Annotated[str | None, BeforeValidator(_none_is_none)]
"""A name that may be absent: the word 'none' stands for no such thing (a void code, a file)."""


def parse_lr(value: float | str) -> float | tuple[float, float]:
    """`1e-3` → one rate; `"1e-5:1e-3"` → (lowest, highest) spread over layer groups."""
    if isinstance(value, int | float):
        rates: tuple[float, ...] = (float(value),)
    else:
        try:
            rates = tuple(float(part) for part in str(value).split(":"))
        except ValueError:
            raise ValueError(f"learning rate {value!r} is not a number or a range like 1e-5:1e-3") from None
    if len(rates) > 2 or any(r <= 0 for r in rates):
        raise ValueError(f"learning rate {value!r} must be a positive number or a range like 1e-5:1e-3")
    if len(rates) == 2:
        if rates[0] > rates[1]:
            raise ValueError(f"learning rate range {value!r} must go from low to high")
        return rates[0], rates[1]
    return rates[0]


class TrainConfig(BaseModel):
    """The options every task reads; a task's settings class adds its own.

    Every field is a flag of each command that reads it (`training.cli_options`), described by its
    `description` here: this is the one place an option is defined. A subclass names its task
    (`task: Literal["pose"] = "pose"`), narrows `arch` to its networks, and gives the defaults its
    demo data needs in `defaults`; its run folder defaults to `runs/<task>`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: ClassVar[dict[str, Any]] = {}
    """This task's own defaults for options it inherits (the demo data's layout, sizes for a CPU)."""

    task: str
    data: Path = Field(description="the data folder (each task's layout: docs/tasks.md)")
    split_seed: int = Field(42, description="seed of the random validation split")
    max_train: int | None = Field(
        None, ge=1, description="train on a seeded random subset of this many items (quick runs)"
    )
    max_valid: int | None = Field(None, ge=1, description="validate on a seeded random subset of this many")
    arch: str = Field(description="the network")
    bs: int = Field(64, ge=1, description="batch size")
    threads: int | None = Field(
        None, ge=1, description="torch threads for training (default: torch's, one per core)"
    )
    epochs: int = Field(5, ge=1, description="epochs of this stage")
    lr: float | tuple[float, float] = Field(
        1e-2, description="max learning rate, or low:high spread over layer groups"
    )
    wd: float = Field(1e-2, ge=0, description="weight decay")
    fp16: bool = Field(False, description="mixed precision (fp16 on CUDA, bf16 on a CPU)")
    resume: bool = Field(False, description="continue this stage's killed run from its last epoch")
    out: Path = Field(Path("runs"), description="run folder for stages, metrics and plots")
    seed: int = Field(0, description="random seed of the run (weights, order, augmentation)")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A task's class: its run folder is `runs/<task>`, and its `defaults` replace the inherited
        ones (help, docs and validation all read the fields, so each shows the task's own)."""
        super().__pydantic_init_subclass__(**kwargs)
        task = cls.model_fields["task"].default
        own = ({"out": Path("runs") / task} if isinstance(task, str) else {}) | cls.defaults
        for name, value in own.items():
            field = copy.copy(cls.model_fields[name])
            field.default = value
            cls.model_fields[name] = field
        cls.model_rebuild(force=True)

    @classmethod
    def task_name(cls) -> str:
        """The task these settings are for (its `task` field's one value)."""
        return str(cls.model_fields["task"].default)

    @classmethod
    def archs(cls) -> tuple[str, ...]:
        """The networks this task trains: the values its `arch` field allows."""
        return tuple(get_args(cls.model_fields["arch"].annotation))

    @model_validator(mode="before")
    @classmethod
    def _arch_fits_task(cls, values: Any) -> Any:
        """An arch of the task's own family, refused in the task's words before any other check."""
        arch, archs = values.get("arch") if isinstance(values, dict) else None, cls.archs()
        if arch is not None and archs and arch not in archs:
            raise ValueError(f"--arch {arch} is not a {cls.task_name()} network (choose {' | '.join(archs)})")
        return values

    @field_validator("lr", mode="before")
    @classmethod
    def _parse_lr(cls, value: Any) -> float | tuple[float, float]:
        if isinstance(value, list | tuple) and len(value) == 2:
            return parse_lr(f"{value[0]}:{value[1]}")
        return parse_lr(value)

    @property
    def learning_rate(self) -> float | slice:
        return slice(*self.lr) if isinstance(self.lr, tuple) else self.lr


def load_config(settings: type[Config], path: Path | None, overrides: dict[str, Any]) -> Config:
    """`settings` from the file's values (if any), then every override that is not None."""
    values: dict[str, Any] = {}
    source = "options"
    if path is not None:
        source = str(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return settings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(_describe(e, settings) for e in err.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _describe(error: Any, settings: type[BaseModel]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    task = settings.model_fields["task"].default if "task" in settings.model_fields else None
    if error["type"] == "extra_forbidden":
        known = f"unknown key {key!r} (known keys: {', '.join(settings.model_fields)})"
        return f"{known}: not a {task} option" if isinstance(task, str) else known
    if error["type"] == "missing":
        return f"{key!r} is required"
    if key == "task" and isinstance(task, str):
        return f"the file is for task {error.get('input')!r}, this command trains {task}"
    if key == "config":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {error['msg']} (got {error.get('input')!r})"
