"""Export a trained stage as a bundle: pipeline.pkl + fp16 model.onnx + manifest, checked, atomic.

The ONNX recipe (checked on torch 2.14 / ORT 1.32): export fp32 with the dynamo exporter at opset
18 with a dynamic batch axis, convert with onnxruntime's own float16 converter keeping fp32 inputs
and outputs, topologically sort. The export is published only if ONNX fp16 agrees with PyTorch
fp32 on a real validation batch; otherwise nothing is published and the error says why.
"""

from __future__ import annotations

import contextlib
import io
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
from serving.networks import CnnSpec, build_cnn
from serving.pipeline import ImagePreprocess, MultiLabelPostprocess, Network, Pipeline
from serving.runtimes import OnnxRuntime
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.errors import ConfigError, DataError, TrainingError
from training.tasks import setup_task

__all__ = ["ExportError", "export_stage", "to_onnx_fp16"]

MIN_AGREEMENT = 0.995


class ExportError(TrainingError):
    """The exported model does not reproduce the trained one; nothing was published."""


def export_stage(
    run: Path, stage: str, name: str, models: Path, parity_items: int = 64, tolerance: float = 1e-2
) -> Path:
    """Publish `run/<stage>.pt` as the next version of `models/<name>`; returns its folder."""
    if parity_items < 2:
        raise ConfigError(f"--parity-items must be at least 2, got {parity_items}")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r} must be a plain folder name like 'planet'")
    state = load_checkpoint(run / f"{stage}.pt")
    if not state.get("complete"):
        raise ConfigError(f"{run / f'{stage}.pt'} is unfinished; finish it with --resume before exporting")
    meta: dict[str, Any] = state["meta"]
    if meta["task"] != "multilabel":
        raise ConfigError(f"{run / f'{stage}.pt'}: exporting {meta['task']!r} models is not supported yet")
    spec = CnnSpec(**meta["spec"])
    model = build_cnn(spec)
    model.load_state_dict(state["model"])
    model.eval()
    classes = list(meta["classes"])
    pipeline = Pipeline(
        task=meta["task"],
        preprocess=ImagePreprocess(meta["size"], tuple(meta["stats"][0]), tuple(meta["stats"][1])),
        network=Network.from_module(spec, model),
        postprocess=MultiLabelPostprocess(tuple(classes), tuple([float(meta["thresh"])] * len(classes))),
    )
    batch = parity_batch(TrainConfig.model_validate(meta["config"]), pipeline.preprocess, parity_items)

    staging = bundles.staging_folder(models, name)
    try:
        bundles.write_pipeline(pipeline, staging / bundles.PIPELINE)
        to_onnx_fp16(model, torch.from_numpy(batch[:2]), staging / bundles.ONNX_MODEL)
        parity = check_parity(model, staging / bundles.ONNX_MODEL, batch, pipeline.postprocess, tolerance)
        size = meta["size"]
        manifest = Manifest(
            name=name,
            version=0,  # publish() assigns the next free version
            task=pipeline.task,
            created=bundles.now(),
            labels=classes,
            thresholds=list(pipeline.postprocess.thresholds),
            input=ImageInput(size=[size, size], mean=list(meta["stats"][0]), std=list(meta["stats"][1])),
            inputs=[TensorSpec(name="images", shape=[-1, 3, size, size], dtype="FP32")],
            outputs=[TensorSpec(name="logits", shape=[-1, len(classes)], dtype="FP32")],
            parity=parity,
            libraries=library_versions(),
            files={},
        )
        return bundles.publish(staging, models, manifest)
    except BaseException:
        bundles.discard(staging)
        raise


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


def to_onnx_fp16(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """fp16 weights, fp32 inputs/outputs named `images` / `logits`, dynamic batch axis."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    fp32 = path.with_suffix(".fp32.onnx")
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its progress
        torch.onnx.export(
            model.eval(),
            (example,),
            str(fp32),
            dynamo=True,
            opset_version=18,
            external_data=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},),
        )
    half = OnnxModel(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True))
    half.topological_sort()
    onnx.save(half.model, str(path))
    fp32.unlink()
    onnx.checker.check_model(str(path))


def check_parity(
    model: nn.Module, onnx_path: Path, batch: np.ndarray, postprocess: MultiLabelPostprocess, tolerance: float
) -> Parity:
    """Scores of ONNX fp16 vs PyTorch fp32 within `tolerance`, same labels for ≥ 99.5% of items."""
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).float().numpy()
    actual = OnnxRuntime(onnx_path).run(batch)
    want, got = postprocess(expected), postprocess(actual)
    pairs = list(zip(want, got, strict=True))
    diff = max(abs(w["scores"][k] - g["scores"][k]) for w, g in pairs for k in w["scores"])
    agreement = float(np.mean([w["labels"] == g["labels"] for w, g in pairs]))
    parity = Parity(tolerance=tolerance, max_abs_diff=diff, agreement=agreement, items=len(batch))
    if diff > tolerance or agreement < MIN_AGREEMENT:
        raise ExportError(
            f"ONNX fp16 disagrees with PyTorch fp32 on {len(batch)} validation images: "
            f"max score difference {diff:.2e} (tolerance {tolerance:.0e}), "
            f"same labels for {agreement:.1%} (need {MIN_AGREEMENT:.1%})"
        )
    return parity


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
