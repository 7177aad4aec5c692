"""`manifest.json`: what a bundle says about itself, validated by pydantic before anything is loaded.

models/<name>/<version>/      integer versions, higher is newer
  manifest.json               `Manifest`: task, labels, input, tensors, parity, sha256 of every file
  pipeline.pkl                `Pipeline` (pre/postprocessing + network), torch-pickled
  model.onnx                  fp16 weights (fp32 where fp16 fails parity: `precision`), fp32
                              inputs/outputs, dynamic batch axis
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from serving.bundle.errors import BundleError

__all__ = [
    "CPU_ONNX_MODEL",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_INPUT_SIZE",
    "MAX_MANIFEST_BYTES",
    "MAX_TOKENS",
    "ONNX_MODEL",
    "PIPELINE",
    "CpuGraph",
    "ImageInput",
    "Manifest",
    "Parity",
    "Precision",
    "TensorSpec",
    "TextInput",
    "manifest_json",
    "now",
    "open_bundle_file",
    "read_manifest",
]

FORMAT_VERSION = 2
"""2: pipeline.pkl is a plain pickle whose weights are bytes (no torch to read it); 1: torch.save'd."""
MAX_INPUT_SIZE = 4096  # pixels a side; a bundle asking for more is damaged or hostile
MAX_TOKENS = 65_536  # a text bundle's token limit, likewise
MANIFEST, PIPELINE, ONNX_MODEL = "manifest.json", "pipeline.pkl", "model.onnx"
CPU_ONNX_MODEL = "model.cpu.onnx"
"""The CPU hosts' graph, where one passed parity (`CpuGraph`)."""
MAX_MANIFEST_BYTES = 16 << 20
"""The largest `manifest.json` read: 16 MiB. A manifest is a few kB (a thousand labels make ~20 kB);
a larger one is damaged or hostile, and is refused before it is read."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]  # -1 for a dynamic axis
    dtype: Literal["FP32", "FP16", "UINT8", "INT64", "BYTES"]


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: list[int]  # [height, width]
    resize: Literal["squish", "pad"] = "squish"
    """squish: every image resized to `size`; pad: each at its own resolution (segmentation)."""
    mean: list[float]
    std: list[float]


class TextInput(BaseModel):
    """A text model's limit: texts over `max_tokens` tokens are cut (`truncate`) or refused."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int
    truncate: bool


class Parity(BaseModel):
    """ONNX fp16 against PyTorch fp32 on a real validation batch, measured at export.

    `max_abs_diff` is in the units of `measure`: sigmoid scores (multilabel), logits (segmentation,
    whose bound is the agreement of the argmax masks instead, so `tolerance` is None), pixels of
    the network's input (pose), or probabilities (single-label tasks).
    """

    model_config = ConfigDict(extra="forbid")
    tolerance: float | None
    max_abs_diff: float
    agreement: float  # share of items (pixels, for segmentation) whose answer is identical
    items: int
    measure: Literal["score", "logit", "pixel", "probability"] = "score"


class CpuGraph(BaseModel):
    """`model.cpu.onnx`: the graph a CPU host runs instead of `model.onnx` (whose fp16 weights ONNX
    Runtime's CPU kernels convert on every run): int8 (static, per-channel, calibrated on training
    images) where it passes the same parity check, else fp32."""

    model_config = ConfigDict(extra="forbid")
    precision: Literal["int8", "fp32"]
    parity: Parity


Precision = Literal["fp16", "fp32"]
"""What a bundle's weights are stored in: fp16 (half the file, the GPU's fast path) unless rounding to
it changes the answers (TensorFlow-trained EfficientNet-Lite bodies: BatchNorm over near-constant
channels amplifies fp16 rounding), then fp32."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1, 2] = 2  # FORMAT_VERSION; format 1 bundles still load
    name: str
    version: int
    task: str  # a name in `serving.bundle.tasks`' registry, checked when the bundle loads
    created: datetime
    labels: list[str]
    thresholds: list[float] | None = None
    input: ImageInput | None = None  # None for text tasks (their tokenizer travels in the pipeline)
    text: TextInput | None = None  # text tasks only
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity: Parity
    precision: Precision = "fp16"
    """The weights' precision in pipeline.pkl and model.onnx (inputs and outputs are fp32 either way)."""
    cpu_graph: CpuGraph | None = None
    libraries: dict[str, str]
    files: dict[str, str]  # file name -> sha256


def read_manifest(folder: Path, tasks: Collection[str] = ()) -> Manifest:
    """The folder's manifest, validated; with `tasks`, its task must be one of them. It is opened as
    every bundle file is (`open_bundle_file`: no symbolic link, a regular file, at most
    `MAX_MANIFEST_BYTES`) before a byte of it is read."""
    path = folder / MANIFEST
    try:
        file, size = open_bundle_file(path, MAX_MANIFEST_BYTES, "manifest")
    except FileNotFoundError:
        raise BundleError(f"{folder}: no {MANIFEST}") from None
    with file:
        data = file.read(size + 1)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: format version {version} is newer than this code reads ({FORMAT_VERSION}); "
            "upgrade serving"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise BundleError(f"{path}: not a valid manifest ({problems})") from None
    if tasks and manifest.task not in tasks:
        raise BundleError(
            f"{path}: not a valid manifest (task: {manifest.task!r} is not one this code serves: "
            f"{', '.join(tasks)})"
        )
    return manifest


def open_bundle_file(path: Path, max_bytes: int, kind: str = "bundle file") -> tuple[io.BufferedReader, int]:
    """`path` opened for reading, and its size, once it is known to be a regular file of the bundle
    itself no larger than `max_bytes`; nothing of it read. A symbolic link is refused (it can point
    anywhere, a device included; O_NOFOLLOW), as is a directory, device or pipe (O_NONBLOCK: opening
    a FIFO does not wait for a writer). A missing file is the caller's to word: FileNotFoundError.
    The manifest and every file it lists (`serving.bundle.read`) are opened here."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        if path.is_symlink():  # O_NOFOLLOW's ELOOP
            raise BundleError(
                f"{path}: a symbolic link (to {path.readlink()}); a bundle's files must be the files "
                "themselves: copy the file in"
            ) from None
        raise BundleError(f"{path}: cannot be opened ({err.strerror or err})") from None
    file = os.fdopen(fd, "rb")
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{path}: not a regular file; a bundle's files must be plain files")
        if info.st_size > max_bytes:
            raise BundleError(
                f"{path}: {info.st_size:,} bytes, larger than any {kind} can be ({max_bytes:,}); not read"
            )
    except BaseException:
        file.close()
        raise
    return file, info.st_size


def manifest_json(manifest: Manifest) -> str:
    """The file's text. An fp16 bundle leaves `precision` out, so that servers from before the
    field existed (which refuse unknown fields) read it as they always did; only an fp32 bundle,
    which they could not serve right, says so."""
    exclude = {"precision"} if manifest.precision == "fp16" else set()
    if manifest.cpu_graph is None:
        exclude.add("cpu_graph")
    return manifest.model_dump_json(indent=2, exclude=exclude or None) + "\n"


def now() -> datetime:
    return datetime.now(UTC)
