"""Reading a bundle safely: every file's sha256 before anything is parsed, a restricted unpickler,
and a pipeline checked against its manifest before anything of it runs.

A listed file must be a regular file of the bundle itself (a symbolic link is refused: it can point
anywhere, a device included) and no larger than any bundle file can be (`MAX_FILE_BYTES`), checked
as it is opened (`open_bundle_file`, which opens `manifest.json` too, capped at 16 MiB); it is
hashed in streamed chunks, so a damaged or foreign file costs a read, never its size in memory, and
only a file whose hash matches is read whole (and hashed again as read: what is parsed is what was
verified).

`pipeline.pkl` goes through an unpickler that resolves exactly `pipeline_classes()` (its weights
are plain bytes), so a pickle naming any other global (os.system, builtins.eval, numpy's array
constructors, ...) is refused before anything in it runs; then every field of every object it made
is checked (types, shapes, ranges) before the pipeline is used. Reading one needs no torch.

Format 1 bundles (`torch.save`'d: a zip whose tensors torch rebuilds) are read through `torch.load`
with the same unpickler plus the two globals a tensor needs; those written before the classes moved
into `serving.bundle` name them by their old modules, which `LEGACY_NAMES` maps to the same classes.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

from serving.bundle.errors import BundleError
from serving.bundle.fields import field_problems
from serving.bundle.manifest import (
    MANIFEST,
    MAX_INPUT_SIZE,
    MAX_TOKENS,
    ONNX_MODEL,
    PIPELINE,
    Manifest,
    open_bundle_file,
)
from serving.bundle.networks.specs import (
    NETWORK_SPECS,
    AwdLstmSpec,
    CnnSpec,
    HybridSpec,
    LinearSpec,
    NgramSpec,
    UnetSpec,
    spec_problems,
)
from serving.bundle.pipeline import ImagePreprocess, Network, Pipeline
from serving.bundle.tasks import TASKS, task_for
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.bundle.tasks.pose import PosePostprocess
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import TextTokenizer

__all__ = [
    "LEGACY_NAMES",
    "MAX_FILE_BYTES",
    "MOVED_SPECS",
    "check_consistency",
    "pipeline_classes",
    "read_pipeline",
    "read_verified",
    "sha256_file",
]

LEGACY_NAMES: dict[str, type] = {
    "serving.pipeline.Pipeline": Pipeline,
    "serving.pipeline.ImagePreprocess": ImagePreprocess,
    "serving.pipeline.Network": Network,
    "serving.pipeline.MultiLabelPostprocess": MultiLabelPostprocess,
    "serving.pipeline.SegmentationPostprocess": SegmentationPostprocess,
    "serving.pipeline.PosePostprocess": PosePostprocess,
    "serving.networks.CnnSpec": CnnSpec,
    "serving.unet.UnetSpec": UnetSpec,
    "serving.awd_lstm.AwdLstmSpec": AwdLstmSpec,
    "serving.text.TextTokenizer": TextTokenizer,
    "serving.text_pipeline.TextPreprocess": TextPreprocess,
    "serving.text_pipeline.SentimentPostprocess": SingleLabelPostprocess,
}
"""Where format-1 bundles exported before `serving.bundle` existed name the pipeline's classes."""

MOVED_SPECS: dict[str, type] = {
    f"serving.bundle.networks.{module}.{spec.__name__}": spec
    for module, spec in (
        ("cnn", CnnSpec),
        ("unet", UnetSpec),
        ("awd_lstm", AwdLstmSpec),
        ("ngrams", NgramSpec),
        ("hybrid", HybridSpec),
        ("linear", LinearSpec),
    )
}
"""Where format-1 bundles name the network specs, before they moved to `serving.bundle.networks.specs`."""


MAX_FILE_BYTES = 2 << 30
"""The largest file a bundle may list: 2 GiB, protobuf's limit on an ONNX graph that holds its
weights (ours do); `pipeline.pkl` holds the same weights. (The manifest records no sizes: servers that
refuse unknown manifest fields could not read a bundle that did.)"""


def pipeline_classes() -> tuple[type, ...]:
    """Exactly the classes a `pipeline.pkl` may hold: the pipeline's own, the network specs, the
    tokenizer, and each registered task's postprocess."""
    posts = {task.postprocess for task in TASKS.values()}
    return (Pipeline, Network, ImagePreprocess, TextPreprocess, TextTokenizer, *NETWORK_SPECS, *posts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache  # the registry is fixed at import; the unpickler asks once per global it meets
def allowed_globals() -> dict[str, object]:
    """Every global a `pipeline.pkl` may name, by its pickled name: the pipeline classes (also under
    their format-1 names) and what torch needs to rebuild a tensor (storages are torch's own)."""
    allowed: dict[str, object] = {f"{c.__module__}.{c.__qualname__}": c for c in pipeline_classes()}
    return allowed | LEGACY_NAMES | MOVED_SPECS


@functools.cache
def _tensor_globals() -> dict[str, object]:
    """What `torch.load` needs beyond the pipeline classes to rebuild a format-1 bundle's tensors."""
    import torch

    return {
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "collections.OrderedDict": collections.OrderedDict,
    }


class _PipelineUnpickler(pickle.Unpickler):
    tensors = False  # format 1: torch's tensor globals too

    def find_class(self, module: str, name: str) -> Any:
        found = allowed_globals().get(f"{module}.{name}")
        if found is None and self.tensors:
            found = _tensor_globals().get(f"{module}.{name}")
        if found is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return found


class _TensorUnpickler(_PipelineUnpickler):
    tensors = True


class _RestrictedPickle:
    """The pickle module `torch.load` is given for a format-1 bundle: its unpickler resolves only
    `allowed_globals()` and a tensor's."""

    Unpickler = _TensorUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _TensorUnpickler(file, **kwargs).load()


def _unpickled(data: bytes) -> Any:
    """A format-2 pickle with the restricted unpickler; a format-1 one (a zip) through `torch.load`."""
    if data[:2] == b"PK":
        import torch

        return torch.load(
            io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle
        )
    return _PipelineUnpickler(io.BytesIO(data)).load()


def read_pipeline(path: Path, data: bytes | None = None) -> Pipeline:
    """Unpickle with only the pipeline classes allowed (any other global is refused, unrun), then
    check every field of what was built.

    Pass `data` (the bytes whose hash was checked) so that what is parsed is what was verified.
    """
    try:
        pipeline = _unpickled(data if data is not None else path.read_bytes())
    except pickle.UnpicklingError as err:
        raise BundleError(
            f"{path}: refused, the pickle names something outside the pipeline classes ({err})"
        ) from None
    except Exception as err:  # a damaged file raises many types; all mean "not a pipeline"
        raise BundleError(f"{path}: not a readable pipeline ({type(err).__name__}: {err})") from err
    if not isinstance(pipeline, Pipeline):
        raise BundleError(f"{path}: holds a {type(pipeline).__name__}, not a Pipeline")
    problems = field_problems(pipeline, "pipeline")
    if problems:
        raise BundleError(f"{path}: the pipeline has fields of the wrong kind: {'; '.join(problems[:5])}")
    return pipeline


def read_verified(folder: Path, manifest: Manifest) -> dict[str, bytes]:
    """Every file the manifest lists, checked against its sha256 (streamed) before it is read whole
    and before any is parsed."""
    for required in (PIPELINE, ONNX_MODEL):
        if required not in manifest.files:
            raise BundleError(f"{folder / MANIFEST}: does not list {required}")
    blobs = {}
    for name, expected in manifest.files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{folder / MANIFEST}: file name {name!r} must be a plain name")
        blobs[name] = _read_checked(folder / name, expected)
    return blobs


def _read_checked(path: Path, expected: str) -> bytes:
    """The file's bytes, once it is known to be a plain file of a sane size whose sha256 matches."""
    try:
        file, size = open_bundle_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise BundleError(f"{path}: listed in the manifest but missing") from None
    with file:
        if hashlib.file_digest(file, "sha256").hexdigest() != expected:  # streamed, in small chunks
            raise BundleError(f"{path}: sha256 does not match the manifest; the file was changed or damaged")
        file.seek(0)
        data = file.read(size + 1)
    if len(data) != size or hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(f"{path}: changed while it was being read; load the bundle again")
    return data


def check_consistency(folder: Path, manifest: Manifest, pipeline: Pipeline) -> None:
    """The unpickled pipeline must be the one the manifest describes, with sane parts: the
    weights-only unpickler restores allowed classes with whatever field values the file holds."""
    problems = _problems(manifest, pipeline)
    if problems:
        raise BundleError(f"{folder / PIPELINE}: the pipeline has {'; '.join(problems)}")


def _problems(manifest: Manifest, pipeline: Pipeline) -> list[str]:
    if pipeline.task not in TASKS:
        return [f"task {pipeline.task!r}, which no pipeline answers"]
    task = task_for(pipeline.task)
    pre, post, network = pipeline.preprocess, pipeline.postprocess, pipeline.network
    wanted_pre = TextPreprocess if task.takes == "texts" else ImagePreprocess
    if type(pre) is not wanted_pre or type(post) is not task.postprocess:
        return [f"pre/postprocessing of unexpected types for a {task.name} model"]
    if type(network) is not Network:
        return [f"a network of an unexpected type for a {task.name} model"]
    problems = []
    if pipeline.task != manifest.task:
        problems.append(f"task {pipeline.task!r} (manifest: {manifest.task!r})")
    labels = list(task.labels(post))
    if labels != manifest.labels:
        problems.append("labels that differ from the manifest's")
    if not labels or len(set(labels)) != len(labels) or not all(labels):
        problems.append("labels that are not distinct, non-empty names")
    problems += task.problems(manifest, pipeline)
    if isinstance(pre, TextPreprocess):
        text_problems = _text_problems(manifest, pre)
        if text_problems is None:  # the tokenizer does not load: nothing more can be checked
            return [*problems, "a tokenizer that does not load"]
        problems += text_problems
        vocab: int | None = pre.tokenizer.vocab_size
    else:
        problems += _image_problems(manifest, pre)
        vocab = None
    return problems + spec_problems(network.spec, task.outputs_per_item(post), vocab)


def _image_problems(manifest: Manifest, pre: ImagePreprocess) -> list[str]:
    problems = []
    image = manifest.input
    described = None if image is None else (image.size, image.resize, image.mean, image.std)
    if described != ([pre.size, pre.size], pre.resize, list(pre.mean), list(pre.std)):
        problems.append("an input size, resizing or normalization that differs from the manifest's")
    if pre.resize == "pad" and not (isinstance(pre.stride, int) and 1 <= pre.stride <= 256):
        problems.append(f"a padding stride of {pre.stride} (allowed 1..256)")
    if not isinstance(pre.size, int) or not 8 <= pre.size <= MAX_INPUT_SIZE:
        problems.append(f"an input size of {pre.size} (allowed 8..{MAX_INPUT_SIZE})")
    if len(pre.mean) != 3 or len(pre.std) != 3 or not all(s > 0 for s in pre.std):
        problems.append(f"a normalization that cannot be right (mean {pre.mean}, std {pre.std})")
    return problems


def _text_problems(manifest: Manifest, pre: TextPreprocess) -> list[str] | None:
    problems = []
    text = manifest.text
    if text is None or (text.max_tokens, text.truncate) != (pre.max_tokens, pre.truncate):
        problems.append("a token limit that differs from the manifest's")
    if not isinstance(pre.max_tokens, int) or not 1 <= pre.max_tokens <= MAX_TOKENS:
        problems.append(f"a token limit of {pre.max_tokens} (allowed 1..{MAX_TOKENS})")
    try:
        pre.tokenizer.vocab_size  # noqa: B018  # the tokenizer's JSON is whatever the file held
    except Exception:
        return None
    return problems
