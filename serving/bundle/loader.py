"""A loaded bundle: verified files, its pipeline, and runtimes made on first use.

bundle = load_bundle("models/planet")      # newest version; hashes checked, pipeline checked
bundle.predict([jpeg_bytes])               # answers in the task's own terms
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.bundle.errors import BundleError
from serving.bundle.flow import Input, predict
from serving.bundle.manifest import CPU_ONNX_MODEL, MANIFEST, ONNX_MODEL, PIPELINE, Manifest, read_manifest
from serving.bundle.pipeline import ImagePreprocess, Pipeline
from serving.bundle.read import check_consistency, read_pipeline, read_verified
from serving.bundle.runtimes import Device, GraphMode, OnnxRuntime, Runtime, RuntimeName
from serving.bundle.tasks import TASKS, ServedTask, task_for
from serving.bundle.write import is_version

__all__ = ["Bundle", "load_bundle", "resolve_version"]


@dataclass
class Bundle:
    """A verified bundle: its manifest, its pipeline, and runtimes made on first use."""

    path: Path
    manifest: Manifest
    pipeline: Pipeline
    onnx_model: bytes = field(repr=False)
    threads: int | None = None
    cpu_onnx_model: bytes | None = field(default=None, repr=False)
    """`model.cpu.onnx`, where the bundle has one (`Manifest.cpu_graph`)."""
    _runtimes: dict[str, Runtime] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> ServedTask:
        """What the bundle's task answers and how (`serving.bundle.tasks`)."""
        return task_for(self.manifest.task)

    def runtime(
        self,
        name: RuntimeName = "onnx",
        device: Device = "cpu",
        graphs: GraphMode = "off",
        max_batch: int = 64,
        cpu_graph: bool = True,
    ) -> Runtime:
        """Built once per (runtime, device, graphs, graph); `graphs` and `max_batch` matter to torch on
        CUDA only; ONNX on a CPU runs `model.cpu.onnx` where the bundle has one, unless `cpu_graph` is off."""
        on_cpu_graph = name == "onnx" and device == "cpu" and cpu_graph and self.cpu_onnx_model is not None
        key = f"{name}:{device}:{graphs}:{max_batch}:{on_cpu_graph}"
        if key not in self._runtimes:
            if name == "onnx":
                self._runtimes[key] = self._onnx_runtime(device, on_cpu_graph)
            elif name == "torch":
                self._runtimes[key] = _torch_runtime()(self.pipeline.network, device, graphs, max_batch)
            else:
                raise ValueError(f"unknown runtime {name!r}; choose onnx or torch")
        return self._runtimes[key]

    def _onnx_runtime(self, device: Device, cpu_graph: bool = False) -> OnnxRuntime:
        """An ONNX Runtime session on `model.onnx` (or `model.cpu.onnx`), whose graph must be the one
        the manifest describes: one input of the pipeline's rank, and the manifest's output with its
        fixed axes."""
        path = self.path / (CPU_ONNX_MODEL if cpu_graph else ONNX_MODEL)
        model = self.cpu_onnx_model if cpu_graph else self.onnx_model
        assert model is not None
        label = (
            f"{path.name} {self.manifest.cpu_graph.precision}"
            if self.manifest.cpu_graph and cpu_graph
            else path.name
        )
        try:
            runtime = OnnxRuntime(model, self.threads, device, label)
        except Exception as err:  # ORT raises its own types for a graph it cannot load
            raise BundleError(
                f"{path}: not a model ONNX Runtime can load ({type(err).__name__}: {err})"
            ) from err
        inputs, outputs = runtime.session.get_inputs(), runtime.session.get_outputs()
        rank = 2 if self.pipeline.preprocess.takes == "texts" else 4
        described = self.manifest.outputs[0]
        fixed = [
            (got, want) for got, want in zip(outputs[0].shape, described.shape, strict=False) if want != -1
        ]
        if (
            len(inputs) != 1
            or len(inputs[0].shape) != rank
            or outputs[0].name != described.name
            or len(outputs[0].shape) != len(described.shape)
            or any(isinstance(got, int) and got != want for got, want in fixed)
        ):
            graph = [(t.name, t.shape) for t in (*inputs, *outputs)]
            raise BundleError(
                f"{path}: the graph's inputs and outputs {graph} are not what the manifest "
                f"describes ({described})"
            )
        return runtime

    @property
    def image_size(self) -> int:
        """The side of the square an image model's network takes."""
        pre = self.pipeline.preprocess
        if not isinstance(pre, ImagePreprocess):
            raise BundleError(f"{self.path}: a {self.manifest.task} model takes texts, not images")
        return pre.size

    def prepare(self, inputs: Sequence[bytes | Path | str]) -> np.ndarray:
        """Encoded images (bytes or files) → the float32 batch the network takes; for a text model,
        texts (str, UTF-8 bytes or text files) → its padded int64 token ids."""
        pre = self.pipeline.preprocess
        return pre.batch([pre.prepare_item(data).item for data in _read(inputs)])

    def predict(
        self, inputs: Sequence[bytes | Path | str], runtime: RuntimeName = "onnx"
    ) -> list[dict[str, Any]]:
        """One answer per input, in order, in the task's terms: labels over their thresholds with
        every label's score; a class-id `mask` at the image's size; `points` in its pixels; a
        `label` with every class's probability."""
        return predict(self.pipeline, _read(inputs), self.runtime(runtime).run)


def _torch_runtime() -> Any:  # the class `TorchRuntime`
    """The PyTorch runtime, imported when chosen: the ONNX path never loads torch."""
    try:
        from serving.bundle.torch_runtime import TorchRuntime
    except ImportError as err:
        raise BundleError(
            f"the torch runtime needs PyTorch, which this install lacks ({err}); install the "
            "`torch` extra (pip install 'train-serve-kit[torch]') or serve with runtime onnx"
        ) from None
    return TorchRuntime


def _read(inputs: Sequence[bytes | Path | str]) -> list[Input]:
    """Files read; bytes and str as they are."""
    return [i.read_bytes() if isinstance(i, Path) else i for i in inputs]


def resolve_version(path: Path) -> Path:
    """`models/<name>/<version>` as given, or the highest version under `models/<name>`."""
    if (path / MANIFEST).is_file():
        return path
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle or model folder")
    versions = sorted((int(p.name), p) for p in path.iterdir() if p.is_dir() and is_version(p.name))
    if not versions:
        raise BundleError(f"{path}: holds no bundle (expected {MANIFEST} or numbered version folders)")
    return versions[-1][1]


def load_bundle(path: Path | str, threads: int | None = None) -> Bundle:
    """Load `models/<name>/<version>` (or the newest version under `models/<name>`), verified."""
    folder = resolve_version(Path(path))
    manifest = read_manifest(folder, TASKS)
    blobs = read_verified(folder, manifest)
    pipeline = read_pipeline(folder / PIPELINE, blobs[PIPELINE])
    check_consistency(folder, manifest, pipeline)
    if (manifest.cpu_graph is None) != (CPU_ONNX_MODEL not in blobs):
        raise BundleError(
            f"{folder / MANIFEST}: describes a CPU graph and lists {CPU_ONNX_MODEL} only together"
        )
    return Bundle(folder, manifest, pipeline, blobs[ONNX_MODEL], threads, blobs.get(CPU_ONNX_MODEL))
