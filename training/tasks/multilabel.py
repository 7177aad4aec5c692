"""Multi-label images (planet-style tags): space-separated tags from a CSV column, BCE loss, accuracy
at a threshold and F-beta; exported with one threshold per label, checked tag for tag. Its demo data:
planet-like scenes of real Fashion-MNIST items."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import multilabel as served
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from training.data import ItemList, TagsFromColumn
from training.data.labellers import Labeller
from training.errors import ExportError
from training.metrics import accuracy_thresh, fbeta, frequency_logits, per_label_report
from training.tasks.base import TaskSetup
from training.tasks.demo_data import DemoData
from training.tasks.image import ImageTask, choose_splitter
from training.tasks.image_config import CsvImagesConfig
from training.tasks.parity import MIN_AGREEMENT

__all__ = ["TASK", "MultilabelConfig", "Scenes"]


class MultilabelConfig(CsvImagesConfig):
    """Tags (planet-style): images named in a CSV, space-separated tags in another of its columns."""

    task: Literal["multilabel"] = "multilabel"
    label_col: str = Field("tags", description="the CSV column holding the labels")
    label_delim: str = Field(" ", description="what separates tags in the label column")
    thresh: float = Field(0.2, gt=0, lt=1, description="score above which a tag is predicted")


class Scenes(DemoData):
    """Planet-like scenes of real Fashion-MNIST items: labels.csv + train/*.jpg + valid.txt."""

    out: Path = Field(Path("data/scenes"), description="folder to create")
    n_train: int = Field(4000, description="training scenes")
    n_valid: int = Field(1000, description="validation scenes")
    size: int = Field(64, description="canvas size in pixels: at 64 each item is about its own 28 px")
    seed: int = Field(0, description="seed of the data set: the same seed, the same files")
    source: Path | None = Field(None, description="folder of the Fashion-MNIST *-ubyte.gz files")
    overwrite: bool = Field(False, description="replace an existing folder")

    def build(self) -> str:
        from training.demo.fashion_mnist import FASHION_MNIST_DIR
        from training.demo.scenes import build_multilabel_scenes

        summary = build_multilabel_scenes(
            self.out, self.n_train, self.n_valid, self.size, self.seed, self.source or FASHION_MNIST_DIR,
            overwrite=self.overwrite,
        )  # fmt: skip
        common = sorted(summary.train_tag_counts.items(), key=lambda kv: -kv[1])
        return (
            f"wrote {summary.n_train} training and {summary.n_valid} validation scenes to {self.out}\n"
            "tags (training count): " + ", ".join(f"{t} {n}" for t, n in common)
        )


class MultiLabelTask(ImageTask[MultilabelConfig]):
    name = "multilabel"
    settings = MultilabelConfig
    served = served.TASK
    spec_type = CnnSpec
    demo_data = Scenes

    def setup(self, cfg: MultilabelConfig) -> TaskSetup:
        items = ItemList.from_csv(
            cfg.data, cfg.csv, column=cfg.image_col, folder=cfg.folder, suffix=cfg.suffix
        )
        src = items.split(choose_splitter(cfg)).label(TagsFromColumn(cfg.label_col, cfg.label_delim))
        return TaskSetup(
            src=src,
            spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
            loss_func=nn.BCEWithLogitsLoss(),
            metrics=[
                partial(accuracy_thresh, thresh=cfg.thresh),
                partial(fbeta, beta=2.0, thresh=cfg.thresh),
            ],
            baseline=frequency_logits,
            primary="fbeta",
            per_label=partial(per_label_report, classes=list(src.classes), thresh=cfg.thresh),
        )

    def postprocess(self, classes: list[str], cfg: MultilabelConfig) -> MultiLabelPostprocess:
        return MultiLabelPostprocess(tuple(classes), tuple([float(cfg.thresh)] * len(classes)))

    def measure(
        self,
        expected: np.ndarray,
        actual: np.ndarray,
        postprocess: MultiLabelPostprocess,
        side: int,
        tolerance: float,
    ) -> Parity:
        """The same tags for ≥ 99.5 % of the images, and scores within `tolerance`."""
        want, got = postprocess.scores(expected), postprocess.scores(actual)
        on_want, on_got = postprocess.on_labels(want), postprocess.on_labels(got)
        agreement = float(np.mean([w == g for w, g in zip(on_want, on_got, strict=True)]))
        if agreement < MIN_AGREEMENT:
            raise ExportError(
                f"ONNX gives other labels than PyTorch fp32 for {1 - agreement:.1%} of {len(want)} "
                f"validation images (at most {1 - MIN_AGREEMENT:.1%} may differ)"
            )
        return Parity(
            tolerance=tolerance,
            max_abs_diff=float(np.abs(want - got).max()),
            agreement=agreement,
            items=len(want),
        )

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: MultilabelConfig) -> Labeller:
        return TagsFromColumn("tags")  # the column the feedback store writes

    def fixed_config(self, postprocess: MultiLabelPostprocess) -> dict[str, Any]:
        return {"thresh": postprocess.thresholds[0]}


TASK = MultiLabelTask()
