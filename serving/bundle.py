"""The bundle: what an export is, and how it is read back safely.

    models/<name>/<version>/      integer versions, higher is newer
      manifest.json               `Manifest`: task, labels, input, tensors, parity, sha256 of every file
      pipeline.pkl                `Pipeline` (pre/postprocessing + fp16 network), torch-pickled
      model.onnx                  fp16 weights, fp32 inputs/outputs, dynamic batch axis

Reading is safe: every file's sha256 is checked before anything is parsed, and `pipeline.pkl`
goes through torch's weights-only unpickler with exactly `PIPELINE_CLASSES` allowed, so a pickle
naming any other global (os.system, builtins.eval, ...) is refused before anything in it runs.
Writing is atomic: a bundle is assembled in a hidden folder and renamed into the next free version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.awd_lstm import AwdLstmSpec
from serving.cuda_graphs import GraphMode
from serving.durable import fsync_dir, write_atomically
from serving.networks import CNN_ARCHS, CnnSpec
from serving.pipeline import (
    PIPELINE_CLASSES,
    ImagePreprocess,
    MultiLabelPostprocess,
    Network,
    Pipeline,
    PosePostprocess,
    Postprocess,
    SegmentationPostprocess,
    Task,
)
from serving.runtimes import Device, OnnxRuntime, Runtime, RuntimeName, TorchRuntime
from serving.text_pipeline import SentimentPostprocess, TextPreprocess
from serving.unet import UnetSpec

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "BundleError",
    "ImageInput",
    "Manifest",
    "Parity",
    "TensorSpec",
    "TextInput",
    "is_version",
    "load_bundle",
    "publish",
    "read_pipeline",
    "read_verified",
    "resolve_version",
    "sha256_file",
    "write_pipeline",
]

FORMAT_VERSION = 1
MAX_INPUT_SIZE = 4096  # pixels a side; a bundle asking for more is damaged or hostile
MAX_TOKENS = 65_536  # a text bundle's token limit, likewise
MANIFEST, PIPELINE, ONNX_MODEL = "manifest.json", "pipeline.pkl", "model.onnx"


class BundleError(Exception):
    """A bundle is missing, tampered with, unsafe, or of a format this code cannot read."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]  # -1 for a dynamic axis
    dtype: Literal["FP32", "FP16", "UINT8", "INT64", "BYTES"]


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: list[int]  # [height, width]
    resize: Literal["squish"] = "squish"
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
    whose bound is the agreement of the argmax masks instead, so `tolerance` is None), or pixels of
    the network's input (pose).
    """

    model_config = ConfigDict(extra="forbid")
    tolerance: float | None
    max_abs_diff: float
    agreement: float  # share of items (pixels, for segmentation) whose answer is identical
    items: int
    measure: Literal["score", "logit", "pixel", "probability"] = "score"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1] = 1  # FORMAT_VERSION
    name: str
    version: int
    task: Task
    created: datetime
    labels: list[str]
    thresholds: list[float] | None = None
    input: ImageInput | None = None  # None for text tasks (their tokenizer travels in the pipeline)
    text: TextInput | None = None  # text tasks only
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity: Parity
    libraries: dict[str, str]
    files: dict[str, str]  # file name -> sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_pipeline(pipeline: Pipeline, path: Path) -> None:
    torch.save(pipeline, path)


def read_pipeline(path: Path, data: bytes | None = None) -> Pipeline:
    """Unpickle with only the pipeline classes allowed: any other global is refused, unrun.

    Pass `data` (the bytes whose hash was checked) so that what is parsed is what was verified.
    """
    try:
        with torch.serialization.safe_globals(list(PIPELINE_CLASSES)):
            source = io.BytesIO(data) if data is not None else path
            pipeline = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BundleError(
            f"{path}: refused, the pickle names something outside the pipeline classes ({err})"
        ) from None
    except Exception as err:  # a damaged file raises many types; all mean "not a pipeline"
        raise BundleError(f"{path}: not a readable pipeline ({type(err).__name__}: {err})") from err
    if not isinstance(pipeline, Pipeline):
        raise BundleError(f"{path}: holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


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


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder}: no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: format version {version} is newer than this code reads ({FORMAT_VERSION}); "
            "upgrade serving"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise BundleError(f"{path}: not a valid manifest ({problems})") from None


def read_verified(folder: Path, manifest: Manifest) -> dict[str, bytes]:
    """Every file the manifest lists, read once and checked against its sha256 before any is parsed."""
    for required in (PIPELINE, ONNX_MODEL):
        if required not in manifest.files:
            raise BundleError(f"{folder / MANIFEST}: does not list {required}")
    blobs = {}
    for name, expected in manifest.files.items():
        path = folder / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{folder / MANIFEST}: file name {name!r} must be a plain name")
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise BundleError(f"{path}: sha256 does not match the manifest; the file was changed or damaged")
        blobs[name] = data
    return blobs


def check_consistency(folder: Path, manifest: Manifest, pipeline: Pipeline) -> None:
    """The unpickled pipeline must be the one the manifest describes, with sane parts: the
    weights-only unpickler restores allowed classes with whatever field values the file holds."""
    pre, post, spec = pipeline.preprocess, pipeline.postprocess, getattr(pipeline.network, "spec", None)
    expected = _TASK_PARTS.get(pipeline.task)
    problems: list[str] = []
    if pipeline.task == "sentiment":
        problems = _text_problems(manifest, pipeline)
    elif expected is None:
        problems.append(f"task {pipeline.task!r}, which no pipeline answers")
    elif not (isinstance(pre, ImagePreprocess) and isinstance(post, expected[0])):
        problems.append(f"pre/postprocessing of unexpected types for a {pipeline.task} model")
    elif not isinstance(pipeline.network, Network) or not isinstance(spec, expected[1]):
        problems.append(f"a network of an unexpected type for a {pipeline.task} model")
    else:
        if pipeline.task != manifest.task:
            problems.append(f"task {pipeline.task!r} (manifest: {manifest.task!r})")
        if list(_names(post)) != manifest.labels:
            problems.append("labels that differ from the manifest's")
        if isinstance(post, MultiLabelPostprocess) and (
            len(post.thresholds) != len(post.labels)
            or (manifest.thresholds is not None and list(post.thresholds) != manifest.thresholds)
        ):
            problems.append("thresholds that differ from the manifest's")
        if (
            isinstance(post, SegmentationPostprocess)
            and post.void is not None
            and not 0 <= post.void < len(post.codes)
        ):
            problems.append(f"a void code {post.void} outside the {len(post.codes)} codes")
        image = manifest.input
        described = None if image is None else (image.size, image.mean, image.std)
        if described != ([pre.size, pre.size], list(pre.mean), list(pre.std)):
            problems.append("an input size or normalization that differs from the manifest's")
        if not isinstance(pre.size, int) or not 8 <= pre.size <= MAX_INPUT_SIZE:
            problems.append(f"an input size of {pre.size} (allowed 8..{MAX_INPUT_SIZE})")
        if not _spec_fits(pipeline.network.spec, post):
            problems.append(f"a network spec that cannot be right ({spec})")
    if problems:
        raise BundleError(f"{folder / PIPELINE}: the pipeline has {'; '.join(problems)}")


def _text_problems(manifest: Manifest, pipeline: Pipeline) -> list[str]:
    pre, post, spec = pipeline.preprocess, pipeline.postprocess, getattr(pipeline.network, "spec", None)
    if not (isinstance(pre, TextPreprocess) and isinstance(post, SentimentPostprocess)):
        return ["pre/postprocessing of unexpected types for a sentiment model"]
    if not isinstance(pipeline.network, Network) or not isinstance(spec, AwdLstmSpec):
        return ["a network of an unexpected type for a sentiment model"]
    problems = []
    if manifest.task != "sentiment":
        problems.append(f"task 'sentiment' (manifest: {manifest.task!r})")
    if list(post.labels) != manifest.labels:
        problems.append("labels that differ from the manifest's")
    text = manifest.text
    if text is None or (text.max_tokens, text.truncate) != (pre.max_tokens, pre.truncate):
        problems.append("a token limit that differs from the manifest's")
    if not isinstance(pre.max_tokens, int) or not 1 <= pre.max_tokens <= MAX_TOKENS:
        problems.append(f"a token limit of {pre.max_tokens} (allowed 1..{MAX_TOKENS})")
    try:
        vocab = pre.tokenizer.vocab_size
    except Exception as err:  # the tokenizer's JSON is whatever the file held
        return [*problems, f"a tokenizer that does not load ({err})"]
    if spec.n_classes != len(post.labels) or spec.vocab_size != vocab:
        problems.append(f"a network spec that cannot be right ({spec})")
    return problems


_TASK_PARTS: dict[str, tuple[type, type]] = {
    "multilabel": (MultiLabelPostprocess, CnnSpec),
    "segmentation": (SegmentationPostprocess, UnetSpec),
    "pose": (PosePostprocess, CnnSpec),
}


def _names(post: Postprocess) -> tuple[str, ...]:
    """What the manifest lists as `labels`: tags, codes, or point names."""
    if isinstance(post, MultiLabelPostprocess | SentimentPostprocess):
        return post.labels
    return post.codes if isinstance(post, SegmentationPostprocess) else post.points


def _spec_fits(spec: CnnSpec | UnetSpec | AwdLstmSpec, post: Postprocess) -> bool:
    if isinstance(spec, AwdLstmSpec) or spec.arch not in CNN_ARCHS:
        return False
    if isinstance(spec, UnetSpec):
        return spec.n_classes == len(_names(post))
    outputs = 2 * len(_names(post)) if isinstance(post, PosePostprocess) else len(_names(post))
    return spec.n_out == outputs and 1 <= spec.hidden <= 65536


def publish(staging: Path, models: Path, manifest: Manifest) -> Path:
    """Hash the staged files, write the manifest, then rename the folder into the next free version.

    A rename never replaces an existing version: if another export took the number first, the next
    one is tried (an *empty* folder of that number would be replaced: nothing is lost with it).
    A crash before the rename leaves only a hidden `.staging-*` folder.
    """
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file() and p.name != MANIFEST}
    for name in files:  # on disk for good before the rename makes them visible
        with (staging / name).open("rb+") as f:
            os.fsync(f.fileno())
    target_dir = models / manifest.name
    target_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(target_dir)
    while True:
        final = manifest.model_copy(update={"version": version, "files": files})
        write_atomically(staging / MANIFEST, (final.model_dump_json(indent=2) + "\n").encode("utf-8"))
        try:
            staging.rename(target_dir / str(version))
        except OSError:
            if (target_dir / str(version)).exists():
                version += 1
                continue
            raise
        fsync_dir(target_dir)
        return target_dir / str(version)


def is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and is_version(p.name)]
    return max(versions, default=0) + 1


def staging_folder(models: Path, name: str) -> Path:
    """A hidden folder beside the versions (same file system, so the final rename is atomic)."""
    folder = models / name / f".staging-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    return folder


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged(models: Path, name: str) -> Iterator[Path]:
    """A staging folder for the next version of `models/<name>`, removed if the block fails: a
    failed export leaves nothing behind, and `publish` inside the block makes a version of it."""
    folder = staging_folder(models, name)
    try:
        yield folder
    except BaseException:
        discard(folder)
        raise


@dataclass
class Bundle:
    """A verified bundle: its manifest, its pipeline, and runtimes made on first use."""

    path: Path
    manifest: Manifest
    pipeline: Pipeline
    onnx_model: bytes = field(repr=False)
    threads: int | None = None
    _runtimes: dict[str, Runtime] = field(default_factory=dict, repr=False)

    def runtime(
        self,
        name: RuntimeName = "onnx",
        device: Device = "cpu",
        graphs: GraphMode = "off",
        max_batch: int = 64,
    ) -> Runtime:
        """Built once per (runtime, device, graphs); `graphs` and `max_batch` matter to torch on CUDA only."""
        key = f"{name}:{device}:{graphs}:{max_batch}"
        if key not in self._runtimes:
            if name == "onnx":
                self._runtimes[key] = OnnxRuntime(self.onnx_model, self.threads, device)
            elif name == "torch":
                self._runtimes[key] = TorchRuntime(self.pipeline.network, device, graphs, max_batch)
            else:
                raise ValueError(f"unknown runtime {name!r}; choose onnx or torch")
        return self._runtimes[key]

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
        if isinstance(pre, TextPreprocess):
            return pre([i.read_bytes() if isinstance(i, Path) else i for i in inputs])
        return pre(self._decode(inputs)).numpy()

    def predict(
        self, inputs: Sequence[bytes | Path | str], runtime: RuntimeName = "onnx"
    ) -> list[dict[str, Any]]:
        """One answer per input, in order, in the task's terms: labels over their thresholds with
        every label's score; a class-id `mask` at the image's size; `points` in its pixels; a text's
        `label` with every class's probability."""
        if isinstance(self.pipeline.preprocess, TextPreprocess):
            return self.pipeline.postprocess(self.runtime(runtime).run(self.prepare(inputs)), [])
        decoded = self._decode(inputs)
        outputs = self.runtime(runtime).run(self.pipeline.preprocess(decoded).numpy())
        return self.pipeline.postprocess(outputs, [(int(d.shape[-2]), int(d.shape[-1])) for d in decoded])

    def _decode(self, images: Sequence[bytes | Path | str]) -> list[torch.Tensor]:
        pre = self.pipeline.preprocess
        assert isinstance(pre, ImagePreprocess)
        if any(isinstance(i, str) for i in images):
            raise TypeError("an image model takes encoded images (bytes) or image files (Path), not str")
        return [pre.decode(i.read_bytes() if isinstance(i, Path) else i) for i in images]  # type: ignore[arg-type]


def load_bundle(path: Path | str, threads: int | None = None) -> Bundle:
    """Load `models/<name>/<version>` (or the newest version under `models/<name>`), verified."""
    folder = resolve_version(Path(path))
    manifest = read_manifest(folder)
    blobs = read_verified(folder, manifest)
    pipeline = read_pipeline(folder / PIPELINE, blobs[PIPELINE])
    check_consistency(folder, manifest, pipeline)
    return Bundle(folder, manifest, pipeline, blobs[ONNX_MODEL], threads)


def now() -> datetime:
    return datetime.now(UTC)
