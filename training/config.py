"""A training run's options, validated once at start-up (pydantic), from flags and/or a TOML file.

One `TrainConfig` for every task; options one task does not read are ignored by the others, and
`TASK_DEFAULTS` gives each task the defaults its demo data needs.

`train-kit train --config run.toml` reproduces a run; flags given beside it override the file.
A wrong key or type is a clear error naming the key, not a failure an hour into training.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serving.bundle.tokenizer import Vocabulary
from training.errors import ConfigError

__all__ = ["TASK_DEFAULTS", "TaskName", "TrainConfig", "load_config", "parse_lr"]

Arch = Literal["resnet18", "resnet34", "resnet50"]
TaskName = Literal["multilabel", "classify", "segmentation", "pose", "sentiment"]
"""The tasks `train-kit train` knows; each is a module of `training.tasks`."""

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "segmentation": {"folder": "images", "out": "runs/segmentation"},
    "pose": {"csv": "points.csv", "folder": "images", "out": "runs/pose"},
    "sentiment": {
        "csv": "reviews.csv",
        "label_col": "label",
        "valid_col": "is_valid",
        "bs": 32,
        "epochs": 4,
        "out": "runs/sentiment",
    },
}
"""Where each task's demo data keeps things (CamVid's, BIWI's and the reviews' layouts), and the
sizes that suit it on a CPU; an option given wins."""


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
    """Everything a run needs; the defaults suit the demo data on a CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName = "multilabel"
    data: Path
    csv: str = "labels.csv"
    folder: str = "train"
    suffix: str = ".jpg"
    image_col: str = "image_name"
    label_col: str = "tags"
    label_delim: str = " "
    valid_list: str | None = Field("valid.txt", description="file of validation image names, if it exists")
    valid_col: str | None = None
    valid_pct: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 42
    codes: str = Field("codes.txt", description="segmentation: the codes file, one code a line")
    void: str | None = Field("Void", description="segmentation: the code left out of loss and metrics")
    mask_folder: str = Field(
        "labels", description="segmentation: masks are <mask_folder>/<stem><mask_suffix>"
    )
    mask_suffix: str = "_P.png"
    points: list[str] = Field(["centre"], min_length=1, description="pose: point p is columns p_x, p_y")
    flip_pairs: list[str] = Field(
        [], description="pose: left:right point names that swap on a horizontal flip (eye_left:eye_right)"
    )
    text_col: str = Field("text", description="sentiment: the CSV column holding the texts")
    extra_csv: str | None = Field(
        "sentences.csv", description="sentiment: unlabelled texts for the LM, if present"
    )

    arch: Arch = "resnet34"
    weights: Path | None = None
    normalize: Literal["data", "imagenet"] | None = Field(
        None, description="stats to normalize with; default: imagenet with --weights, else the data's"
    )
    size: int = Field(64, ge=8)
    bs: int = Field(64, ge=1)
    num_workers: int | None = Field(None, ge=0)
    epochs: int = Field(5, ge=1)
    lr: float | tuple[float, float] = 1e-2
    wd: float = Field(1e-2, ge=0)
    pct_start: float = Field(0.3, gt=0, lt=1)
    thresh: float = Field(0.2, gt=0, lt=1)

    # sentiment (ULMFiT): tokenizer, AWD-LSTM sizes, language model
    vocabulary: Vocabulary = Field("bpe", description="sentiment: bpe subwords, or whole words")
    vocab_size: int = Field(8000, ge=100, le=65_536)
    max_tokens: int = Field(512, ge=8, le=65_536, description="longer texts keep xxbos and their last ids")
    emb: int = Field(256, ge=8)
    hidden: int = Field(512, ge=8)
    layers: int = Field(3, ge=1, le=8)
    bptt: int = Field(70, ge=8)
    lm_epochs: int = Field(4, ge=0, description="language model epochs; 0 with --encoder: use it as is")
    lm_lr: float = Field(3e-3, gt=0)
    encoder: Path | None = Field(
        None, description="sentiment: an encoder.pt to start from instead of a new LM"
    )

    do_flip: bool = True
    flip_vert: bool = False
    max_rotate: float = Field(10.0, ge=0)
    max_zoom: float = Field(1.1, ge=1)
    max_lighting: float = Field(0.2, ge=0, lt=1)
    max_warp: float = Field(0.2, ge=0, lt=1)
    p_affine: float = Field(0.75, ge=0, le=1)
    p_lighting: float = Field(0.75, ge=0, le=1)

    fp16: bool = False
    unfreeze: bool = False
    stage: str = "stage-1"
    from_stage: str | None = None
    resume: bool = False
    out: Path = Path("runs/multilabel")
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return TASK_DEFAULTS.get(str(values.get("task")), {}) | values
        return values

    @field_validator("lr", mode="before")
    @classmethod
    def _parse_lr(cls, value: Any) -> float | tuple[float, float]:
        if isinstance(value, list | tuple) and len(value) == 2:
            return parse_lr(f"{value[0]}:{value[1]}")
        return parse_lr(value)

    @field_validator("stage", "from_stage")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError(f"stage name {value!r} must be a plain file name like 'stage-1'")
        return value

    @model_validator(mode="after")
    def _stage_is_new(self) -> TrainConfig:
        if self.from_stage is not None and self.from_stage == self.stage:
            raise ValueError(
                f"--stage {self.stage} would overwrite the --from-stage it starts from; "
                "give the new stage its own name"
            )
        return self

    @property
    def learning_rate(self) -> float | slice:
        return slice(*self.lr) if isinstance(self.lr, tuple) else self.lr


def load_config(path: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """The file's values (if any), then every override that is not None."""
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
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(_describe(e) for e in err.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r} (known keys: {', '.join(TrainConfig.model_fields)})"
    if error["type"] == "missing":
        return f"{key!r} is required"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"
