"""Segmentation, CamVid layout (`images/*`, masks found by `MaskInFolder`, `codes.txt`, a valid
list): a U-Net, per-pixel cross-entropy and metrics that ignore the Void code; exported with any
height and width, checked as the same class on ≥ 99 % of the pixels. Its demo data: CamVid-like
scenes of Fashion-MNIST items."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from serving.bundle import Parity
from serving.bundle.networks.unet import UnetSpec
from serving.bundle.tasks import segmentation as served
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from training.config import NoneWord
from training.data import ItemList, MaskFromFunction, MaskInFolder, read_codes
from training.data.labellers import Labeller
from training.errors import ConfigError, DataError, ExportError
from training.losses import PixelCrossEntropy
from training.metrics import background_logits, mean_iou, pixel_accuracy
from training.tasks.base import TaskSetup
from training.tasks.demo_data import DemoData
from training.tasks.image import ImageTask, choose_splitter
from training.tasks.image_config import SplitImagesConfig

__all__ = ["TASK", "SegmentationConfig", "SegmentationScenes"]

MIN_PIXEL_AGREEMENT = 0.99  # pixels with the identical class


class SegmentationConfig(SplitImagesConfig):
    """A class per pixel: images in a folder, a mask beside each in another, the class codes in a file."""

    defaults: ClassVar[dict[str, Any]] = {"folder": "images"}
    task: Literal["segmentation"] = "segmentation"
    codes: str = Field("codes.txt", description="the codes file, one code a line")
    void: NoneWord = Field("Void", description="the code left out of loss and metrics ('none': no such code)")
    mask_folder: str = Field("labels", description="masks are <mask_folder>/<stem><mask_suffix>")
    mask_suffix: str = Field("_P.png", description="what follows an image's stem in its mask name")


class SegmentationScenes(DemoData):
    """CamVid-like scenes: images/*.jpg, labels/*_P.png masks (Background, 10 items, Void), codes.txt."""

    out: Path = Field(Path("data/seg"), description="folder to create")
    n_train: int = Field(2000, description="training scenes")
    n_valid: int = Field(400, description="validation scenes")
    size: int = Field(96, description="canvas size in pixels (a multiple of 32)")
    seed: int = Field(0, description="seed of the data set: the same seed, the same files")
    source: Path | None = Field(None, description="folder of the Fashion-MNIST *-ubyte.gz files")
    overwrite: bool = Field(False, description="replace an existing folder")

    def build(self) -> str:
        from training.demo.fashion_mnist import FASHION_MNIST_DIR
        from training.demo.segmentation import build_segmentation_scenes

        summary = build_segmentation_scenes(
            self.out, self.n_train, self.n_valid, self.size, self.seed, self.source or FASHION_MNIST_DIR,
            overwrite=self.overwrite,
        )  # fmt: skip
        total = sum(summary.pixel_counts.values())
        shares = ", ".join(f"{code} {n / total:.1%}" for code, n in summary.pixel_counts.items())
        wrote = f"wrote {self.n_train} training and {self.n_valid} validation scenes to {self.out}"
        return f"{wrote}; pixels: {shares}"


class SegmentationTask(ImageTask[SegmentationConfig]):
    name = "segmentation"
    settings = SegmentationConfig
    served = served.TASK
    spec_type = UnetSpec
    demo_data = SegmentationScenes

    def setup(self, cfg: SegmentationConfig) -> TaskSetup:
        codes = read_codes(cfg.data / cfg.codes)
        void = None
        if cfg.void is not None:
            if cfg.void not in codes:
                raise ConfigError(
                    f"--void {cfg.void!r} is not one of the codes in {cfg.data / cfg.codes}: {codes}"
                )
            void = codes.index(cfg.void)
        labeller = MaskFromFunction(MaskInFolder(cfg.data / cfg.mask_folder, cfg.mask_suffix), codes)
        src = ItemList.from_folder(cfg.data / cfg.folder).split(choose_splitter(cfg)).label(labeller)
        return TaskSetup(
            src=src,
            spec=UnetSpec(cfg.arch, n_classes=len(codes)),
            loss_func=PixelCrossEntropy(void),
            metrics=[partial(pixel_accuracy, void=void), partial(mean_iou, void=void)],
            baseline=background_logits(len(codes)),
            primary="mean_iou",
            void=void,
            targets="mask",
        )

    def postprocess(self, classes: list[str], cfg: SegmentationConfig) -> SegmentationPostprocess:
        void = classes.index(cfg.void) if cfg.void in classes else None
        return SegmentationPostprocess(tuple(classes), void)

    def measure(
        self,
        expected: np.ndarray,
        actual: np.ndarray,
        postprocess: SegmentationPostprocess,
        side: int,
        tolerance: float,
    ) -> Parity:
        agreement = float(np.mean(postprocess.class_ids(expected) == postprocess.class_ids(actual)))
        if agreement < MIN_PIXEL_AGREEMENT:
            raise ExportError(
                f"ONNX gives another class than PyTorch fp32 on {1 - agreement:.2%} of the pixels of "
                f"{len(expected)} validation images (at most {1 - MIN_PIXEL_AGREEMENT:.0%} may differ)"
            )
        diff = float(np.abs(expected - actual).max())
        return Parity(
            tolerance=None, max_abs_diff=diff, agreement=agreement, items=len(expected), measure="logit"
        )

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: SegmentationConfig) -> Labeller:
        return MaskFromFunction(MaskInFolder(folder / "labels"), setup.src.classes)

    def check_feedback(self, targets: torch.Tensor, setup: TaskSetup) -> None:
        if targets.shape[1:] != setup.src.y_train.shape[1:]:
            raise DataError(
                f"feedback masks are {tuple(targets.shape[1:])}, the training masks "
                f"{tuple(setup.src.y_train.shape[1:])} (height, width); fine-tuning a segmenter needs "
                "feedback at the training images' size"
            )

    def fixed_config(self, postprocess: SegmentationPostprocess) -> dict[str, Any]:
        void = postprocess.void
        return {"void": None if void is None else postprocess.codes[void]}


TASK = SegmentationTask()
