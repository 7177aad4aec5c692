"""What the image tasks share: their run (one `fit_one_cycle` stage, `training.image_run`), where
the validation split comes from, and how an image export is checked — ONNX fp16 against the
stage's PyTorch fp32 network on real validation images, in the task's own terms (`measure`),
before anything is published."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from serving.bundle import Parity
from serving.bundle.pipeline import ImagePreprocess
from serving.bundle.runtimes import OnnxRuntime
from training.data import ColumnSplitter, FileListSplitter, RandomSplitter
from training.data.splitters import Splitter, subsampled
from training.errors import ConfigError, DataError, ExportError
from training.image_run import image_stages
from training.learner import Reporter
from training.stages import Stage
from training.tasks.base import ExportOptions, ExportPlan, TrainingTask
from training.tasks.image_config import ImageConfig, SplitImagesConfig

__all__ = ["ImageTask", "choose_splitter"]

IC = TypeVar("IC", bound=ImageConfig)


def choose_splitter(cfg: SplitImagesConfig) -> Splitter:
    """A `valid_col` wins; else the valid list if the file exists; else a seeded random split;
    cut to `max_train` / `max_valid` items where given."""
    splitter: Splitter
    if cfg.valid_col:
        splitter = ColumnSplitter(cfg.valid_col)
    elif cfg.valid_list and (cfg.data / cfg.valid_list).is_file():
        splitter = FileListSplitter.from_file(cfg.data / cfg.valid_list)
    else:
        splitter = RandomSplitter(cfg.valid_pct, cfg.split_seed)
    return subsampled(splitter, cfg.max_train, cfg.max_valid, cfg.split_seed)


class ImageTask(TrainingTask[IC]):
    """A task whose bundle takes images, squished to the stage's size and normalized by its stats."""

    sweeps_rates = True

    def stages(self, cfg: IC, reporter: Reporter | None = None) -> list[Stage]:
        return image_stages(cfg, self, reporter)

    def measure(
        self, expected: np.ndarray, actual: np.ndarray, postprocess: Any, side: int, tolerance: float
    ) -> Parity:
        """PyTorch's outputs against ONNX's in the task's terms; raises `ExportError` if they differ."""
        raise NotImplementedError

    def export_plan(
        self,
        meta: dict[str, Any],
        cfg: IC,
        model: nn.Module,
        options: ExportOptions,
    ) -> ExportPlan:
        stats = meta["stats"]
        native = options.resolution == "native"
        if native and not self.served.spatial:
            raise ConfigError(
                f"--resolution native: a {self.name} model's head needs the training size; only "
                "segmentation answers at any size"
            )
        resize: Literal["squish", "pad"] = "pad" if native else "squish"
        preprocess = ImagePreprocess(int(meta["size"]), tuple(stats[0]), tuple(stats[1]), resize=resize)
        postprocess = self.postprocess(list(meta["classes"]), cfg)
        if native:
            postprocess = dataclasses.replace(postprocess, native=True)
        trained, batch, calibration = self.export_batches(cfg, preprocess, options.parity_items)

        def check(_rounded: nn.Module, onnx_path: Path) -> Parity:
            # The stage's own fp32 weights on what its loaders fed it, against the bundle's ONNX
            # graph on what the bundle prepares from the same files: preprocessing is checked too.
            with torch.inference_mode():
                expected = model.eval()(torch.from_numpy(trained)).float().numpy()
            actual = OnnxRuntime(onnx_path).run(batch)
            parity = self.measure(expected, actual, postprocess, batch.shape[-1], options.tolerance)
            if parity.tolerance is not None and parity.max_abs_diff > parity.tolerance:
                raise ExportError(
                    f"ONNX disagrees with PyTorch fp32 on {len(batch)} validation images: "
                    f"max {parity.measure} difference {parity.max_abs_diff:.2e} "
                    f"(tolerance {parity.tolerance:.0e})"
                )
            return parity

        return ExportPlan(preprocess, postprocess, batch, check, calibration)

    def export_batches(
        self, cfg: IC, preprocess: ImagePreprocess, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to `n` validation images of the run's own data, twice, in the same order: as the
        stage's validation loader feeds them to its network, and as the bundle prepares them from
        the files (at native resolution the bundle pads where training squished: both are the
        bundle's); and up to `n` training images as the bundle prepares them, to calibrate a CPU
        graph on data the parity check does not score."""
        try:
            src = self.setup(cfg).src
        except DataError as err:
            raise DataError(
                f"the parity check reads validation images from the run's data at {cfg.data}, "
                f"and could not: {err}. Export from the folder the run was started in."
            ) from err
        paths = [Path(p) for p in src.valid.items[:n]]
        prepared = preprocess([preprocess.decode(p.read_bytes()) for p in paths])
        calibration = preprocess([preprocess.decode(Path(p).read_bytes()) for p in src.train.items[:n]])
        if preprocess.resize == "pad":
            return prepared, prepared, calibration
        stats = (preprocess.mean, preprocess.std)
        data = src.transform(([], []), size=preprocess.size).databunch(bs=n, num_workers=0, device="cpu")
        x, _ = next(iter(data.normalize(stats).valid_dl))  # the first batch holds them (bs=n)
        return x[: len(paths)].numpy(), prepared, calibration
