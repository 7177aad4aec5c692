"""Pose, BIWI-style points in a CSV (`centre_x`, `centre_y`): coordinates regressed in [-1, 1] with
MSE, scored as mean pixel error in each image's own pixels; exported points must land within half a
pixel of PyTorch's."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import pose as served
from serving.bundle.tasks.pose import PosePostprocess
from training.config import TrainConfig
from training.data import ItemList, PointsFromColumns, image_sizes
from training.data.flip_pairs import flip_pair_indices, refuse_unpaired_sides
from training.data.labellers import Labeller
from training.metrics import Metric, mean_pixel_error, mean_points
from training.tasks.base import TaskSetup
from training.tasks.image import ImageTask, choose_splitter

__all__ = ["TASK"]

POINT_TOLERANCE = 0.5  # pixels of the network's input


class PoseTask(ImageTask):
    name = "pose"
    served = served.TASK
    spec_type = CnnSpec

    def setup(self, cfg: TrainConfig) -> TaskSetup:
        items = ItemList.from_csv(
            cfg.data, cfg.csv, column=cfg.image_col, folder=cfg.folder, suffix=cfg.suffix
        )
        src = items.split(choose_splitter(cfg)).label(point_columns(cfg))
        pairs = flip_pair_indices(cfg.flip_pairs, cfg.points)
        if cfg.do_flip:
            refuse_unpaired_sides(cfg.points, pairs)
        return TaskSetup(
            src=src,
            spec=CnnSpec(cfg.arch, n_out=2 * len(cfg.points)),
            loss_func=nn.MSELoss(),
            metrics=pose_metrics(src.valid),
            baseline=mean_points,
            primary="mean_pixel_error",
            higher_is_better=False,
            metrics_for=pose_metrics,
            targets="points",
            flip_pairs=pairs,
        )

    def postprocess(self, classes: list[str], cfg: TrainConfig) -> PosePostprocess:
        return PosePostprocess(tuple(classes), tuple(cfg.flip_pairs))

    def measure(
        self,
        expected: np.ndarray,
        actual: np.ndarray,
        postprocess: PosePostprocess,
        side: int,
        tolerance: float,
    ) -> Parity:
        sizes = [(side, side)] * len(expected)
        gaps = np.linalg.norm(
            postprocess.pixels(expected, sizes) - postprocess.pixels(actual, sizes), axis=-1
        )
        return Parity(
            tolerance=POINT_TOLERANCE,
            max_abs_diff=float(gaps.max()),
            agreement=float(np.mean((gaps <= POINT_TOLERANCE).all(axis=1))),
            items=len(expected),
            measure="pixel",
        )

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: TrainConfig) -> Labeller:
        return PointsFromColumns(cfg.points)  # the feedback store writes <point>_x, <point>_y

    def fixed_config(self, postprocess: PosePostprocess) -> dict[str, Any]:
        return {"points": list(postprocess.points), "flip_pairs": list(postprocess.flip_pairs)}


def point_columns(cfg: TrainConfig) -> PointsFromColumns:
    """The points and the CSV columns `cfg` reads them from."""
    return PointsFromColumns(cfg.points, cfg.x_col, cfg.y_col)


def pose_metrics(items: ItemList) -> list[Metric]:
    """Mean pixel error in each validation image's own pixels."""
    return [partial(mean_pixel_error, sizes=image_sizes(items))]


TASK = PoseTask()
