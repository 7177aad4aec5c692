"""Writing a whole bundle from a pipeline: `pipeline.pkl`, `model.onnx` (in the precision of the
pipeline's weights: fp16, or fp32 where fp16 fails parity), the manifest, published
atomically as the next version of `models/<name>` — or nothing at all if any step fails.

The training kit calls this with its own parity check (in the task's terms, on validation data);
tests and tools that build small bundles call it with none, and get the raw-output check below.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from serving.bundle.cpu_graph import write_cpu_graph
from serving.bundle.manifest import (
    MAX_TOKENS,
    ONNX_MODEL,
    PIPELINE,
    ImageInput,
    Manifest,
    Parity,
    TensorSpec,
    TextInput,
    now,
)
from serving.bundle.onnx_export import to_onnx
from serving.bundle.pipeline import Pipeline, Preprocess
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.tasks import task_for
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.write import publish, staged, write_pipeline

__all__ = ["ParityCheck", "library_versions", "write_bundle"]

ParityCheck = Callable[[torch.nn.Module, Path], Parity]
"""(the network rebuilt from the pipeline's weights, the written `model.onnx`) → the parity
to record; raises to refuse. A check may compare against its own reference instead (the training kit
compares with the stage's fp32 weights)."""


def write_bundle(
    pipeline: Pipeline,
    models: Path,
    name: str,
    example: np.ndarray,
    check: ParityCheck | None = None,
    calibration: np.ndarray | None = None,
) -> Path:
    """Publish `pipeline` as the next version of `models/<name>`; returns its folder.

    `example` is a prepared batch of at least two items (images, or padded token ids) the exporter
    traces; `check` measures ONNX against the network (default: the largest raw-output
    difference on `example`, recorded with no tolerance). With `calibration` (prepared training
    images), a CPU graph that passes the same check is written too (`serving.bundle.cpu_graph`)."""
    task = task_for(pipeline.task)
    post, pre = pipeline.postprocess, pipeline.preprocess
    model = pipeline.network.build()
    described = _described_input(pre, task.spatial)
    with staged(models, name) as staging:
        write_pipeline(pipeline, staging / PIPELINE)
        to_onnx(
            model,
            torch.from_numpy(example[:2]),
            staging / ONNX_MODEL,
            task.onnx_output,
            spatial=task.spatial,
            input_name=described.onnx_input,
            max_length=described.max_length,
            fp16=pipeline.network.precision == "fp16",
        )
        check = check or _raw_parity(example)
        parity = check(model, staging / ONNX_MODEL)
        cpu_graph = None
        if calibration is not None and described.image is not None:
            fp32 = pipeline.network.precision == "fp32"

            def export_fp32(network: torch.nn.Module, batch: np.ndarray, path: Path) -> None:
                if fp32:  # model.onnx is that graph already: no second export
                    shutil.copyfile(staging / ONNX_MODEL, path)
                    return
                to_onnx(
                    network,
                    torch.from_numpy(batch[:2]),
                    path,
                    task.onnx_output,
                    spatial=task.spatial,
                    fp16=False,
                )

            native = described.image.resize == "pad"  # sizes its training-size calibration never saw
            cpu_graph = write_cpu_graph(
                model, example, calibration, staging, export_fp32, check, skip_fp32=fp32, int8=not native
            )
        n = task.outputs_per_item(post)
        out_shape = [-1, n, -1, -1] if task.spatial else [-1, n]
        manifest = Manifest(
            name=name,
            version=0,  # publish() assigns the next free version
            task=task.name,
            created=now(),
            labels=list(task.labels(post)),
            thresholds=task.thresholds(post),
            input=described.image,
            text=described.text,
            inputs=[described.tensor],
            outputs=[TensorSpec(name=task.onnx_output, shape=out_shape, dtype="FP32")],
            parity=parity,
            precision=pipeline.network.precision,
            cpu_graph=cpu_graph,
            libraries=library_versions(),
            files={},
        )
        return publish(staging, models, manifest)


@dataclass(frozen=True)
class _Input:
    """How the manifest and the ONNX graph describe what a pipeline takes."""

    onnx_input: str
    tensor: TensorSpec
    image: ImageInput | None = None
    text: TextInput | None = None
    max_length: int | None = None


def _described_input(pre: Preprocess, spatial: bool) -> _Input:
    """Images: their size, resizing and normalization; texts: their token limit."""
    if isinstance(pre, TextPreprocess):
        text = TextInput(max_tokens=min(pre.max_tokens, MAX_TOKENS), truncate=pre.truncate)
        return _Input(
            "tokens",
            TensorSpec(name="texts", shape=[-1], dtype="BYTES"),
            text=text,
            max_length=pre.max_tokens,
        )
    side = -1 if spatial else pre.size
    image = ImageInput(size=[pre.size, pre.size], resize=pre.resize, mean=list(pre.mean), std=list(pre.std))
    return _Input("images", TensorSpec(name="images", shape=[-1, 3, side, side], dtype="FP32"), image=image)


def _raw_parity(example: np.ndarray) -> ParityCheck:
    def check(model: torch.nn.Module, onnx_path: Path) -> Parity:
        with torch.inference_mode():
            expected = model(torch.from_numpy(example)).float().numpy()
        actual = OnnxRuntime(onnx_path).run(example)
        same = expected.reshape(len(expected), -1).argmax(1) == actual.reshape(len(actual), -1).argmax(1)
        return Parity(
            tolerance=None,
            max_abs_diff=float(np.abs(expected - actual).max()),
            agreement=float(same.mean()),
            items=len(example),
            measure="logit",
        )

    return check


def library_versions() -> dict[str, str]:
    import onnx

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
