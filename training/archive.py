"""`.mar` archives for TorchServe, made from a published bundle by torch-model-archiver.

The archive holds the bundle's files unchanged (so the handler verifies the same hashes), the
handler `serving/torchserve_handler.py`, and a `model-config.yaml` with TorchServe's batching and
worker settings. It is written beside the target under a hidden name and renamed into place, so a
model store never holds half an archive.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from serving.bundle import BundleError, load_bundle, resolve_version
from training.errors import ConfigError, TrainingError

__all__ = ["ArchiveError", "TorchServeConfig", "archive_bundle"]


class ArchiveError(TrainingError):
    """The bundle cannot be archived: damaged, missing, or torch-model-archiver is absent."""


@dataclass(frozen=True)
class TorchServeConfig:
    """What TorchServe reads from `model-config.yaml` (its own batching: `batch_size` items or
    `max_batch_delay_ms`), plus our handler's runtime and intra-op threads (None: cores / workers)."""

    batch_size: int = 8
    max_batch_delay_ms: int = 50
    workers: int = 1
    response_timeout_s: int = 120
    runtime: str = "onnx"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.runtime not in ("onnx", "torch"):
            raise ArchiveError(f"runtime {self.runtime!r}: choose onnx or torch")

    def yaml(self) -> str:
        threads = "" if self.threads is None else f"  threads: {self.threads}\n"
        return (
            f"minWorkers: {self.workers}\nmaxWorkers: {self.workers}\nbatchSize: {self.batch_size}\n"
            f"maxBatchDelay: {self.max_batch_delay_ms}\nresponseTimeout: {self.response_timeout_s}\n"
            f"handler:\n  runtime: {self.runtime}\n{threads}"
        )


def archive_bundle(
    bundle: Path, out: Path, config: TorchServeConfig | None = None, archive_format: str = "default"
) -> Path:
    """`out/<name>.mar` (or the folder `out/<name>/` with no-archive) for the bundle at `bundle`."""
    if archive_format not in ("default", "no-archive"):
        raise ArchiveError(f"archive format {archive_format!r}: choose default or no-archive")
    try:
        from model_archiver.model_archiver_config import ModelArchiverConfig
        from model_archiver.model_packaging import generate_model_archive
    except ImportError as err:
        raise ArchiveError("torch-model-archiver is not installed: pip install '.[torchserve]'") from err
    try:
        folder = resolve_version(bundle)
        loaded = load_bundle(folder)  # every hash checked: a damaged bundle is never archived
    except BundleError as err:
        raise ArchiveError(str(err)) from err
    manifest = loaded.manifest
    config = config or TorchServeConfig()
    out.mkdir(parents=True, exist_ok=True)
    target = out / (manifest.name if archive_format == "no-archive" else f"{manifest.name}.mar")
    staging = out / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "model-config.yaml"
            config_file.write_text(config.yaml())
            files = ["manifest.json", *manifest.files]
            generate_model_archive(
                ModelArchiverConfig(
                    model_name=manifest.name,
                    handler=handler_file(),
                    version=str(manifest.version),
                    extra_files=",".join(str(folder / name) for name in files),
                    export_path=str(staging),
                    archive_format=archive_format,
                    config_file=str(config_file),
                )
            )
        built = staging / target.name
        if target.is_dir():  # a no-archive folder: swapped with the old one in one step, then removed
            exchange(built, target)
        else:
            built.replace(target)  # atomic for a file
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def handler_file() -> str:
    """The TorchServe handler's source file, found without importing it: the archive copies the
    file, and the training kit imports nothing of serving but `serving.bundle`."""
    spec = importlib.util.find_spec("serving.torchserve_handler")
    if spec is None or spec.origin is None:
        raise ConfigError("serving.torchserve_handler is not installed beside the training kit")
    return spec.origin


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically (Linux `renameat2(RENAME_EXCHANGE)`): TorchServe reading the model
    store sees the old archive or the new one, never neither, and a failure leaves both as they were."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise ArchiveError("replacing a no-archive folder atomically needs renameat2 (Linux, glibc 2.28+)")
    at_cwd = -100  # AT_FDCWD
    if renameat2(at_cwd, bytes(a), at_cwd, bytes(b), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise ArchiveError(f"could not swap {a} into {b}: {os.strerror(errno)}")
