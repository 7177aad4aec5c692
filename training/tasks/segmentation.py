"""Segmentation, CamVid layout (`images/*`, masks found by `MaskInFolder`, `codes.txt`, a valid
list): a U-Net, per-pixel cross-entropy and metrics that ignore the Void code; exported with any
height and width, checked as the same class on ≥ 99 % of the pixels."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.bundle import Parity
from serving.bundle.networks.unet import UnetSpec
from serving.bundle.tasks import segmentation as served
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from training.config import TrainConfig
from training.data import ItemList, MaskFromFunction, MaskInFolder, read_codes
from training.data.labellers import Labeller
from training.errors import ConfigError, DataError, ExportError
from training.losses import PixelCrossEntropy
from training.metrics import background_logits, mean_iou, pixel_accuracy
from training.tasks.base import TaskSetup
from training.tasks.image import ImageTask, choose_splitter

__all__ = ["TASK"]

MIN_PIXEL_AGREEMENT = 0.99  # pixels with the identical class


class SegmentationTask(ImageTask):
    name = "segmentation"
    served = served.TASK
    spec_type = UnetSpec

    def setup(self, cfg: TrainConfig) -> TaskSetup:
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

    def postprocess(self, classes: list[str], cfg: TrainConfig) -> SegmentationPostprocess:
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

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: TrainConfig) -> Labeller:
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
