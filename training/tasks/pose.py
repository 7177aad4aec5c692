"""Pose, BIWI-style points in a CSV (`centre_x`, `centre_y`): coordinates regressed in [-1, 1] with
MSE, scored as mean pixel error in each image's own pixels; exported points must land within half a
pixel of PyTorch's. Its demo data: real LFW faces on textured canvases."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.tasks import pose as served
from serving.bundle.tasks.pose import PosePostprocess
from training.data import ItemList, PointsFromColumns, image_sizes
from training.data.flip_pairs import flip_pair_indices, refuse_unpaired_sides
from training.data.labellers import Labeller
from training.metrics import Metric, mean_pixel_error, mean_points
from training.tasks.base import TaskSetup
from training.tasks.demo_data import DemoData
from training.tasks.image import ImageTask, choose_splitter
from training.tasks.image_config import CsvImagesConfig

__all__ = ["TASK", "Faces", "PoseConfig"]

POINT_TOLERANCE = 0.5  # pixels of the network's input


class PoseConfig(CsvImagesConfig):
    """Points on images (BIWI-style): images named in a CSV, each point's x and y in its columns."""

    defaults: ClassVar[dict[str, Any]] = {"csv": "points.csv", "folder": "images"}
    task: Literal["pose"] = "pose"
    points: list[str] = Field(["centre"], min_length=1, description="the point names; repeatable")
    x_col: str = Field("{point}_x", description="the column of a point's x ({point} is its name)")
    y_col: str = Field("{point}_y", description="the column of a point's y ({point} is its name)")
    flip_pairs: list[str] = Field(
        [], description="left:right point names that swap on a horizontal flip (eye_left:eye_right)"
    )


class Faces(DemoData):
    """Real LFW faces on textured canvases: images/*.jpg + points.csv (face centre x, y) + valid.txt."""

    out: Path = Field(Path("data/pose"), description="folder to create")
    n_train: int = Field(1500, description="training images")
    n_valid: int = Field(300, description="validation images")
    size: int = Field(96, description="canvas size in pixels")
    seed: int = Field(0, description="seed of the data set: the same seed, the same files")
    overwrite: bool = Field(False, description="replace an existing folder")

    def build(self) -> str:
        from training.demo.pose import build_pose_set

        build_pose_set(self.out, self.n_train, self.n_valid, self.size, self.seed, overwrite=self.overwrite)
        return f"wrote {self.n_train} training and {self.n_valid} validation images to {self.out}"


class PoseTask(ImageTask[PoseConfig]):
    name = "pose"
    settings = PoseConfig
    served = served.TASK
    spec_type = CnnSpec
    demo_data = Faces

    def setup(self, cfg: PoseConfig) -> TaskSetup:
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

    def postprocess(self, classes: list[str], cfg: PoseConfig) -> PosePostprocess:
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

    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: PoseConfig) -> Labeller:
        return PointsFromColumns(cfg.points)  # the feedback store writes <point>_x, <point>_y

    def fixed_config(self, postprocess: PosePostprocess) -> dict[str, Any]:
        return {"points": list(postprocess.points), "flip_pairs": list(postprocess.flip_pairs)}


def point_columns(cfg: PoseConfig) -> PointsFromColumns:
    """The points and the CSV columns `cfg` reads them from."""
    return PointsFromColumns(cfg.points, cfg.x_col, cfg.y_col)


def pose_metrics(items: ItemList) -> list[Metric]:
    """Mean pixel error in each validation image's own pixels."""
    return [partial(mean_pixel_error, sizes=image_sizes(items))]


TASK = PoseTask()
