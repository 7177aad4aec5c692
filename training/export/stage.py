"""A finished stage → the next version of `models/<name>`: pipeline.pkl + model.onnx + manifest.

Weights are fp16 where that passes the parity check, else fp32 (`precision="auto"`): a bundle is
half the size and the GPU's fast path when rounding costs nothing, and never wrong when it does.
The stage's task says how its bundle prepares inputs and answers, and how ONNX must agree with
PyTorch fp32 on real validation data (the same tags for ≥ 99.5 % of images, the same class on
≥ 99 % of pixels, points within half a pixel, the same label with probabilities within the
tolerance). `serving.bundle.export.write_bundle` writes, checks and publishes atomically: an export
that fails its check publishes nothing, and the error says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from serving.bundle.export import write_bundle
from serving.bundle.manifest import Precision
from serving.bundle.pipeline import Network, Pipeline
from training.checkpoint import load_checkpoint
from training.errors import ConfigError, ExportError
from training.tasks import TASKS
from training.tasks.base import ExportOptions, Resolution

__all__ = ["WeightPrecision", "export_stage"]

WeightPrecision = Literal["auto", "fp16", "fp32"]
"""auto: fp16 if it passes the parity check, else fp32; fp16 or fp32: that, or no export."""

log = logging.getLogger(__name__)


def export_stage(
    run: Path,
    stage: str,
    name: str | None,
    models: Path,
    parity_items: int = 64,
    tolerance: float = 1e-2,
    resolution: Resolution = "squish",
    precision: WeightPrecision = "auto",
    cpu_graph: bool = True,
) -> Path:
    """Publish `run/<stage>.pt` as the next version of `models/<name>`; returns its folder. Without a
    `name`, the model is named after its task: a fixed default would publish a classifier as the next
    version of another task's model, which a running server would swap in under that model's clients.

    `tolerance` bounds scores and probabilities (multilabel, classify, sentiment); the other tasks
    have fixed bounds (see above). `resolution="native"` makes a segmenter answer each image at its
    own resolution instead of squashing it to the training size. `precision` is the weights' (see the
    module's docstring). `cpu_graph`: an image bundle also gets `model.cpu.onnx`, int8 calibrated on
    training images, else fp32, where one passes the same parity check (`serving.bundle.cpu_graph`)."""
    if parity_items < 2:
        raise ConfigError(f"--parity-items must be at least 2, got {parity_items}")
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise ConfigError(f"--name {name!r} must be a plain folder name like 'planet'")
    path = run / f"{stage}.pt"
    state = load_checkpoint(path)
    if not state.get("complete"):
        raise ConfigError(f"{path} is unfinished; finish it with --resume before exporting")
    meta: dict[str, Any] = state["meta"]
    task = TASKS.get(meta["task"])
    if task is None:
        raise ConfigError(
            f"{path}: exporting {meta['task']!r} models is not supported (exportable: {', '.join(TASKS)})"
        )
    name = name or task.name
    spec = task.spec(meta)
    model = Network(spec, state["model"]).build()
    cfg = task.saved_config(meta["config"])  # older checkpoints: no task, or every task's keys
    plan = task.export_plan(meta, cfg, model, ExportOptions(parity_items, tolerance, resolution))
    tries: list[Precision] = ["fp16", "fp32"] if precision == "auto" else [precision]
    for candidate in tries:
        network = Network.from_module(spec, model, candidate)
        pipeline = Pipeline(task.name, plan.preprocess, network, plan.postprocess)
        try:
            calibration = plan.calibration if cpu_graph else None
            return write_bundle(pipeline, models, name, plan.example, plan.check, calibration)
        except ExportError as err:
            if candidate == tries[-1]:
                raise
            log.warning("fp16 weights fail the parity check, exporting fp32 weights instead: %s", err)
    raise AssertionError("unreachable: the last try returns or raises")
