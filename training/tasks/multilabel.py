"""Multi-label images (planet-style tags): space-separated tags from a CSV column, BCE loss, accuracy
at a threshold and F-beta; exported with one threshold per label, checked tag for tag."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import multilabel as served
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from training.config import TrainConfig
from training.data import ItemList, TagsFromColumn
from training.data.labellers import Labeller
from training.errors import ExportError
from training.metrics import accuracy_thresh, fbeta, frequency_logits, per_label_report
from training.tasks.base import TaskSetup
from training.tasks.image import ImageTask, choose_splitter
from training.tasks.parity import MIN_AGREEMENT

__all__ = ["TASK"]


class MultiLabelTask(ImageTask):
    name = "multilabel"
    served = served.TASK
    spec_type = CnnSpec

    def setup(self, cfg: TrainConfig) -> TaskSetup:
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

    def postprocess(self, classes: list[str], cfg: TrainConfig) -> MultiLabelPostprocess:
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

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: TrainConfig) -> Labeller:
        return TagsFromColumn("tags")  # the column the feedback store writes

    def fixed_config(self, postprocess: MultiLabelPostprocess) -> dict[str, Any]:
        return {"thresh": postprocess.thresholds[0]}


TASK = MultiLabelTask()
