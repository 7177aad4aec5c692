"""Export a trained stage as a bundle: pipeline.pkl + fp16 model.onnx + manifest, checked, atomic.

The ONNX recipe (checked on torch 2.14 / ORT 1.32): export fp32 with the dynamo exporter at opset
18 with a dynamic batch axis (and dynamic height and width for a U-Net), convert with onnxruntime's
own float16 converter keeping fp32 inputs and outputs, topologically sort. The export is published
only if ONNX fp16 agrees with PyTorch fp32 on a real validation batch, in the task's own terms:
the same tags, the same argmax on ≥ 99 % of pixels, points within half a pixel. Otherwise nothing
is published and the error says why.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from serving import bundle as bundles
from serving.bundle import ImageInput, Manifest, Parity, TensorSpec
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.onnx_export import to_onnx_fp16
from serving.bundle.pipeline import ImagePreprocess, Network, Pipeline, Postprocess
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.bundle.tasks.pose import PosePostprocess
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.errors import ConfigError, DataError, TrainingError
from training.models import spec_from_meta
from training.tasks import setup_task

__all__ = ["ExportError", "export_stage", "library_versions", "to_onnx_fp16"]

MIN_AGREEMENT = 0.995  # multilabel: items with identical tags
MIN_PIXEL_AGREEMENT = 0.99  # segmentation: pixels with the identical class
POINT_TOLERANCE = 0.5  # pose: pixels of the network's input
EXPORTABLE = ("multilabel", "segmentation", "pose", "sentiment")
_OUTPUT_NAMES = {"multilabel": "logits", "segmentation": "logits", "pose": "coords"}


class ExportError(TrainingError):
    """The exported model does not reproduce the trained one; nothing was published."""


def export_stage(
    run: Path, stage: str, name: str, models: Path, parity_items: int = 64, tolerance: float = 1e-2
) -> Path:
    """Publish `run/<stage>.pt` as the next version of `models/<name>`; returns its folder.

    `tolerance` bounds the multilabel scores; the other tasks have fixed bounds (see above)."""
    if parity_items < 2:
        raise ConfigError(f"--parity-items must be at least 2, got {parity_items}")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r} must be a plain folder name like 'planet'")
    state = load_checkpoint(run / f"{stage}.pt")
    if not state.get("complete"):
        raise ConfigError(f"{run / f'{stage}.pt'} is unfinished; finish it with --resume before exporting")
    meta: dict[str, Any] = state["meta"]
    if meta["task"] == "sentiment":
        from training.export_text import export_text_stage

        return export_text_stage(state, name, models, parity_items, tolerance)
    if meta["task"] not in EXPORTABLE:
        raise ConfigError(
            f"{run / f'{stage}.pt'}: exporting {meta['task']!r} models is not supported "
            f"(exportable: {', '.join(EXPORTABLE)})"
        )
    spec = spec_from_meta(meta)
    model = Network(spec, state["model"]).build()
    cfg = TrainConfig.model_validate(meta["config"])
    size, classes = int(meta["size"]), list(meta["classes"])
    preprocess = ImagePreprocess(size, tuple(meta["stats"][0]), tuple(meta["stats"][1]))
    pipeline = Pipeline(
        task=meta["task"],
        preprocess=preprocess,
        network=Network.from_module(spec, model),
        postprocess=_postprocess(meta["task"], classes, cfg),
    )
    batch = parity_batch(cfg, preprocess, parity_items)
    output = _OUTPUT_NAMES[pipeline.task]
    spatial = pipeline.task == "segmentation"  # a U-Net answers any height and width

    with bundles.staged(models, name) as staging:
        bundles.write_pipeline(pipeline, staging / bundles.PIPELINE)
        to_onnx_fp16(model, torch.from_numpy(batch[:2]), staging / bundles.ONNX_MODEL, output, spatial)
        parity = check_parity(model, staging / bundles.ONNX_MODEL, batch, pipeline.postprocess, tolerance)
        side = -1 if spatial else size
        out_shape = [-1, len(classes), -1, -1] if spatial else [-1, int(expected_width(pipeline))]
        post = pipeline.postprocess
        manifest = Manifest(
            name=name,
            version=0,  # publish() assigns the next free version
            task=pipeline.task,
            created=bundles.now(),
            labels=classes,
            thresholds=list(post.thresholds) if isinstance(post, MultiLabelPostprocess) else None,
            input=ImageInput(size=[size, size], mean=list(meta["stats"][0]), std=list(meta["stats"][1])),
            inputs=[TensorSpec(name="images", shape=[-1, 3, side, side], dtype="FP32")],
            outputs=[TensorSpec(name=output, shape=out_shape, dtype="FP32")],
            parity=parity,
            libraries=library_versions(),
            files={},
        )
        return bundles.publish(staging, models, manifest)


def expected_width(pipeline: Pipeline) -> int:
    """Outputs per item of a CNN: one per tag, or x and y per point."""
    spec = pipeline.network.spec
    if isinstance(spec, CnnSpec):
        return spec.n_out
    return spec.n_classes or 0


def _postprocess(task: str, classes: list[str], cfg: TrainConfig) -> Postprocess:
    if task == "segmentation":
        void = classes.index(cfg.void) if cfg.void in classes else None
        return SegmentationPostprocess(tuple(classes), void)
    if task == "pose":
        return PosePostprocess(tuple(classes))
    return MultiLabelPostprocess(tuple(classes), tuple([float(cfg.thresh)] * len(classes)))


def parity_batch(cfg: TrainConfig, preprocess: ImagePreprocess, n: int) -> np.ndarray:
    """Up to `n` validation images of the run's own data, prepared by the bundle's preprocessing."""
    try:
        valid = setup_task(cfg).src.valid
    except DataError as err:
        raise DataError(
            f"the parity check reads validation images from the run's data at {cfg.data}, "
            f"and could not: {err}. Export from the folder the run was started in."
        ) from err
    paths = [Path(p) for p in valid.items[:n]]
    return preprocess([preprocess.decode(p.read_bytes()) for p in paths]).numpy()


def check_parity(
    model: nn.Module, onnx_path: Path, batch: np.ndarray, postprocess: Postprocess, tolerance: float
) -> Parity:
    """ONNX fp16 against PyTorch fp32 on `batch`, in the task's terms; raises `ExportError` if off."""
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).float().numpy()
    actual = OnnxRuntime(onnx_path).run(batch)
    if isinstance(postprocess, SegmentationPostprocess):
        parity = _mask_parity(expected, actual, postprocess)
    elif isinstance(postprocess, PosePostprocess):
        parity = _point_parity(expected, actual, postprocess, batch.shape[-1])
    elif isinstance(postprocess, MultiLabelPostprocess):
        parity = _score_parity(expected, actual, postprocess, tolerance)
    else:
        raise TypeError(f"no image parity for {type(postprocess).__name__}")
    if parity.tolerance is not None and parity.max_abs_diff > parity.tolerance:
        raise ExportError(
            f"ONNX fp16 disagrees with PyTorch fp32 on {len(batch)} validation images: "
            f"max {parity.measure} difference {parity.max_abs_diff:.2e} (tolerance {parity.tolerance:.0e})"
        )
    return parity


def _score_parity(
    expected: np.ndarray, actual: np.ndarray, postprocess: MultiLabelPostprocess, tolerance: float
) -> Parity:
    want, got = postprocess.scores(expected), postprocess.scores(actual)
    same = [w == g for w, g in zip(postprocess.on_labels(want), postprocess.on_labels(got), strict=True)]
    agreement = float(np.mean(same))
    if agreement < MIN_AGREEMENT:
        raise ExportError(
            f"ONNX fp16 gives other labels than PyTorch fp32 for {1 - agreement:.1%} of {len(want)} "
            f"validation images (at most {1 - MIN_AGREEMENT:.1%} may differ)"
        )
    return Parity(
        tolerance=tolerance,
        max_abs_diff=float(np.abs(want - got).max()),
        agreement=agreement,
        items=len(want),
    )


def _mask_parity(expected: np.ndarray, actual: np.ndarray, postprocess: SegmentationPostprocess) -> Parity:
    agreement = float(np.mean(postprocess.class_ids(expected) == postprocess.class_ids(actual)))
    if agreement < MIN_PIXEL_AGREEMENT:
        raise ExportError(
            f"ONNX fp16 gives another class than PyTorch fp32 on {1 - agreement:.2%} of the pixels of "
            f"{len(expected)} validation images (at most {1 - MIN_PIXEL_AGREEMENT:.0%} may differ)"
        )
    diff = float(np.abs(expected - actual).max())
    return Parity(
        tolerance=None, max_abs_diff=diff, agreement=agreement, items=len(expected), measure="logit"
    )


def _point_parity(
    expected: np.ndarray, actual: np.ndarray, postprocess: PosePostprocess, side: int
) -> Parity:
    sizes = [(side, side)] * len(expected)
    gaps = np.linalg.norm(postprocess.pixels(expected, sizes) - postprocess.pixels(actual, sizes), axis=-1)
    agreement = float(np.mean((gaps <= POINT_TOLERANCE).all(axis=1)))
    return Parity(
        tolerance=POINT_TOLERANCE,
        max_abs_diff=float(gaps.max()),
        agreement=agreement,
        items=len(expected),
        measure="pixel",
    )


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
