"""Single-label image classification, ImageNet layout (`train/<class>/*`, `valid/<class>/*`):
cross-entropy and accuracy; exported as one label with every class's probability, checked as
probabilities (the same label, probabilities within the tolerance). Its demo data: single
Fashion-MNIST items in class folders (also a body to pretrain for the other tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import classify as served
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from training.data import FolderSplitter, FromFolderName, ItemList
from training.data.splitters import subsampled
from training.metrics import accuracy, frequency_logits
from training.tasks.base import TaskSetup
from training.tasks.demo_data import DemoData
from training.tasks.image import ImageTask
from training.tasks.image_config import ImageConfig
from training.tasks.parity import probability_parity

__all__ = ["TASK", "ClassifyConfig", "ItemFolders"]


class ClassifyConfig(ImageConfig):
    """One class per image, ImageNet layout: train/<class>/* and valid/<class>/* in the data folder."""

    task: Literal["classify"] = "classify"


class ItemFolders(DemoData):
    """Single Fashion-MNIST items as train/<class>/*.png + valid/<class>/*.png, for pretraining."""

    older_names: ClassVar[tuple[str, ...]] = ("items",)
    out: Path = Field(Path("data/items"), description="folder to create")
    n_train: int = Field(20000, description="items from Fashion-MNIST's train split")
    n_valid: int = Field(2000, description="items from its test split")
    seed: int = Field(0, description="seed of the data set: the same seed, the same files")
    source: Path | None = Field(None, description="folder of the Fashion-MNIST *-ubyte.gz files")

    def build(self) -> str:
        from training.demo.fashion_mnist import FASHION_MNIST_DIR
        from training.demo.items import build_item_folders

        build_item_folders(self.out, self.n_train, self.n_valid, self.seed, self.source or FASHION_MNIST_DIR)
        return f"wrote {self.n_train} training and {self.n_valid} validation items to {self.out}"


class ClassifyTask(ImageTask[ClassifyConfig]):
    name = "classify"
    settings = ClassifyConfig
    served = served.TASK
    spec_type = CnnSpec
    demo_data = ItemFolders

    def setup(self, cfg: ClassifyConfig) -> TaskSetup:
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

    def postprocess(self, classes: list[str], cfg: ClassifyConfig) -> SingleLabelPostprocess:
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
