"""Each task's answers to the data block questions, its network, loss and metrics, from a config.

Multi-label (planet-style tags) and single-label classification (ImageNet folders, used to
pretrain a body offline); segmentation, pose and sentiment join here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from serving.networks import CnnSpec
from training.config import TrainConfig
from training.data import (
    ColumnSplitter,
    FileListSplitter,
    FolderSplitter,
    FromFolderName,
    ItemList,
    LabelledData,
    RandomSplitter,
    TagsFromColumn,
)
from training.data.splitters import Splitter
from training.learner import LossFunc
from training.metrics import Metric, accuracy, accuracy_thresh, fbeta

__all__ = ["TaskSetup", "choose_splitter", "setup_task"]


@dataclass
class TaskSetup:
    src: LabelledData
    spec: CnnSpec
    loss_func: LossFunc
    metrics: list[Metric]


def choose_splitter(cfg: TrainConfig) -> Splitter:
    """A `valid_col` wins; else the valid list if the file exists; else a seeded random split."""
    if cfg.valid_col:
        return ColumnSplitter(cfg.valid_col)
    if cfg.valid_list and (cfg.data / cfg.valid_list).is_file():
        return FileListSplitter.from_file(cfg.data / cfg.valid_list)
    return RandomSplitter(cfg.valid_pct, cfg.split_seed)


def setup_task(cfg: TrainConfig) -> TaskSetup:
    if cfg.task == "classify":
        return _classify(cfg)
    items = ItemList.from_csv(cfg.data, cfg.csv, column=cfg.image_col, folder=cfg.folder, suffix=cfg.suffix)
    src = items.split(choose_splitter(cfg)).label(TagsFromColumn(cfg.label_col, cfg.label_delim))
    return TaskSetup(
        src=src,
        spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
        loss_func=nn.BCEWithLogitsLoss(),
        metrics=[partial(accuracy_thresh, thresh=cfg.thresh), partial(fbeta, beta=2.0, thresh=cfg.thresh)],
    )


def _classify(cfg: TrainConfig) -> TaskSetup:
    """Single-label classification, ImageNet layout: `train/<class>/*`, `valid/<class>/*`."""
    src = ItemList.from_folder(cfg.data).split(FolderSplitter()).label(FromFolderName())
    return TaskSetup(
        src=src,
        spec=CnnSpec(cfg.arch, n_out=len(src.classes)),
        loss_func=nn.CrossEntropyLoss(),
        metrics=[accuracy],
    )
