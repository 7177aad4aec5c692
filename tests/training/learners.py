"""A small learner on the colour-tag images: a real loop with a network that trains in seconds."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from training.data import FileListSplitter, ItemList, TagsFromColumn, get_transforms
from training.learner import Learner, Reporter
from training.metrics import accuracy_thresh, fbeta


def tiny_cnn(n_out: int) -> nn.Sequential:
    """Body (two conv stages) + head, shaped like the kit's CNNs so layer groups make sense."""
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    )
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_out))
    return nn.Sequential(body, head)


def tiny_learner(
    data_dir: Path, run_dir: Path, size: int = 24, reporter: Reporter | None = None, device: str | None = None
) -> Learner:
    torch.manual_seed(0)
    src = (
        ItemList.from_csv(data_dir, "labels.csv", folder="train", suffix=".jpg")
        .split(FileListSplitter.from_file(data_dir / "valid.txt"))
        .label(TagsFromColumn("tags"))
    )
    data = (
        src.transform(get_transforms(), size=size).databunch(bs=16, num_workers=0, device=device).normalize()
    )
    model = tiny_cnn(len(src.classes))
    groups = [model[0][:3], model[0][3:], model[1]]
    metrics = [partial(accuracy_thresh, thresh=0.5), partial(fbeta, beta=2.0, thresh=0.5)]
    return Learner(data, model, nn.BCEWithLogitsLoss(), metrics, groups, path=run_dir, reporter=reporter)
