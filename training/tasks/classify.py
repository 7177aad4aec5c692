"""Single-label image classification, ImageNet layout (`train/<class>/*`, `valid/<class>/*`):
cross-entropy and accuracy; exported as one label with every class's probability, checked as
probabilities (the same label, probabilities within the tolerance)."""

from __future__ import annotations

import numpy as np
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import classify as served
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from training.config import TrainConfig
from training.data import FolderSplitter, FromFolderName, ItemList
from training.data.splitters import subsampled
from training.metrics import accuracy, frequency_logits
from training.tasks.base import TaskSetup
from training.tasks.image import ImageTask
from training.tasks.parity import probability_parity

__all__ = ["TASK"]


class ClassifyTask(ImageTask):
    name = "classify"
    served = served.TASK
    spec_type = CnnSpec

    def setup(self, cfg: TrainConfig) -> TaskSetup:
        splitter = subsampled(FolderSplitter(), cfg.max_train, cfg.max_valid, cfg.split_seed)
        src = ItemList.from_folder(cfg.data).split(splitter).label(FromFolderName())
        return TaskSetup(
            src=src,
            spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
            loss_func=nn.CrossEntropyLoss(),
            metrics=[accuracy],
            baseline=frequency_logits,
            primary="accuracy",
        )

    def postprocess(self, classes: list[str], cfg: TrainConfig) -> SingleLabelPostprocess:
        return SingleLabelPostprocess(tuple(classes))

    def measure(
        self,
        expected: np.ndarray,
        actual: np.ndarray,
        postprocess: SingleLabelPostprocess,
        side: int,
        tolerance: float,
    ) -> Parity:
        return probability_parity(expected, [actual], tolerance, "validation images")


TASK = ClassifyTask()
