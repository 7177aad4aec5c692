"""Each task's answers to the data block questions, its network, loss, metrics and baseline.

Multi-label (planet-style tags), segmentation (CamVid layout, U-Net), pose (BIWI-style points in
a CSV) and single-label classification (ImageNet folders, used to pretrain a body offline).
Every task names a trivial `baseline` (predictions that ignore the image), measured beside the
model in every run: a model that does not beat it clearly has learnt nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.networks.unet import UnetSpec
from training.config import TrainConfig
from training.data import (
    ColumnSplitter,
    FileListSplitter,
    FolderSplitter,
    FromFolderName,
    ItemList,
    LabelledData,
    MaskFromFunction,
    MaskInFolder,
    PointsFromColumns,
    RandomSplitter,
    TagsFromColumn,
    image_sizes,
    read_codes,
)
from training.data.splitters import Splitter
from training.errors import ConfigError
from training.learner import LossFunc
from training.losses import PixelCrossEntropy
from training.metrics import (
    Metric,
    accuracy,
    accuracy_thresh,
    background_logits,
    fbeta,
    frequency_logits,
    mean_iou,
    mean_pixel_error,
    mean_points,
    pixel_accuracy,
)

__all__ = ["Baseline", "TaskSetup", "choose_splitter", "setup_task"]

Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(training targets, validation targets) → predictions for the validation items."""


@dataclass
class TaskSetup:
    src: LabelledData
    spec: CnnSpec | UnetSpec
    loss_func: LossFunc
    metrics: list[Metric]
    baseline: Baseline
    primary: str
    """The metric that says whether one model is better than another (fine-tuning gates on it)."""
    higher_is_better: bool = True
    void: int | None = None
    """Segmentation: the code ignored by loss and metrics, and painted where augmentation uncovers."""
    metrics_for: Callable[[ItemList], list[Metric]] | None = None
    """The metrics for other validation items, where they depend on the items (pose: image sizes)."""


def choose_splitter(cfg: TrainConfig) -> Splitter:
    """A `valid_col` wins; else the valid list if the file exists; else a seeded random split."""
    if cfg.valid_col:
        return ColumnSplitter(cfg.valid_col)
    if cfg.valid_list and (cfg.data / cfg.valid_list).is_file():
        return FileListSplitter.from_file(cfg.data / cfg.valid_list)
    return RandomSplitter(cfg.valid_pct, cfg.split_seed)


def setup_task(cfg: TrainConfig) -> TaskSetup:
    return {"classify": _classify, "segmentation": _segmentation, "pose": _pose}.get(cfg.task, _multilabel)(
        cfg
    )


def _multilabel(cfg: TrainConfig) -> TaskSetup:
    items = ItemList.from_csv(cfg.data, cfg.csv, column=cfg.image_col, folder=cfg.folder, suffix=cfg.suffix)
    src = items.split(choose_splitter(cfg)).label(TagsFromColumn(cfg.label_col, cfg.label_delim))
    return TaskSetup(
        src=src,
        spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
        loss_func=nn.BCEWithLogitsLoss(),
        metrics=[partial(accuracy_thresh, thresh=cfg.thresh), partial(fbeta, beta=2.0, thresh=cfg.thresh)],
        baseline=frequency_logits,
        primary="fbeta",
    )


def _classify(cfg: TrainConfig) -> TaskSetup:
    """Single-label classification, ImageNet layout: `train/<class>/*`, `valid/<class>/*`."""
    src = ItemList.from_folder(cfg.data).split(FolderSplitter()).label(FromFolderName())
    return TaskSetup(
        src=src,
        spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
        loss_func=nn.CrossEntropyLoss(),
        metrics=[accuracy],
        baseline=frequency_logits,
        primary="accuracy",
    )


def _segmentation(cfg: TrainConfig) -> TaskSetup:
    """CamVid layout: `images/*`, masks found by `MaskInFolder`, `codes.txt`, a valid list."""
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
    )


def _pose(cfg: TrainConfig) -> TaskSetup:
    """Points from CSV columns (`centre_x`, `centre_y`), coordinates regressed in [-1, 1]."""
    items = ItemList.from_csv(cfg.data, cfg.csv, column=cfg.image_col, folder=cfg.folder, suffix=cfg.suffix)
    src = items.split(choose_splitter(cfg)).label(PointsFromColumns(cfg.points))
    return TaskSetup(
        src=src,
        spec=CnnSpec(cfg.arch, n_out=2 * len(cfg.points)),
        loss_func=nn.MSELoss(),
        metrics=_pose_metrics(src.valid),
        baseline=mean_points,
        primary="mean_pixel_error",
        higher_is_better=False,
        metrics_for=_pose_metrics,
    )


def _pose_metrics(items: ItemList) -> list[Metric]:
    return [partial(mean_pixel_error, sizes=image_sizes(items))]
