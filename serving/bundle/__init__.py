"""The bundle: what an export is and does offline — the seam between training and serving.

    models/<name>/<version>/      integer versions, higher is newer
      manifest.json               `Manifest`: task, labels, input, tensors, parity, sha256 of every file
      pipeline.pkl                `Pipeline` (pre/postprocessing + network), torch-pickled
      model.onnx                  fp16 weights (fp32 where fp16 fails parity: the manifest's
                                  `precision`), fp32 inputs/outputs, dynamic batch axis

This package imports no gRPC, no asyncio and nothing of `serving.server`: the training kit writes
bundles through it, the TorchServe handler and `serve-kit` read them through it.
"""

from serving.bundle.errors import BundleError
from serving.bundle.loader import Bundle, load_bundle, resolve_version
from serving.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    MAX_INPUT_SIZE,
    ONNX_MODEL,
    PIPELINE,
    ImageInput,
    Manifest,
    Parity,
    TensorSpec,
    TextInput,
    now,
    read_manifest,
)
from serving.bundle.read import read_pipeline, read_verified, sha256_file
from serving.bundle.write import is_version, next_version, publish, staged, write_pipeline

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_INPUT_SIZE",
    "ONNX_MODEL",
    "PIPELINE",
    "Bundle",
    "BundleError",
    "ImageInput",
    "Manifest",
    "Parity",
    "TensorSpec",
    "TextInput",
    "is_version",
    "load_bundle",
    "next_version",
    "now",
    "publish",
    "read_manifest",
    "read_pipeline",
    "read_verified",
    "resolve_version",
    "sha256_file",
    "staged",
    "write_pipeline",
]
