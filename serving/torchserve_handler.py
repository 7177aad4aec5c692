"""TorchServe handler for any bundle: the bundle's own preprocessing, one answer per request.

TorchServe loads this file from the `.mar` that `train-kit archive` writes and needs exactly one class
in it. The class stays thin: loading (hash check, safe unpickling), preprocessing, the runtime and
postprocessing are `serving.bundle`'s, the same code the gRPC server runs. The worker's Python must have
this project installed (TorchServe starts workers with the launcher's interpreter).

Each request carries one image or one text, as TorchServe users send it: the raw body, a multipart
form field, or JSON. In JSON an image is base64 (`{"data": "..."}`, also `image` or `b64`) and a text
is itself (`{"text": "..."}`, also `data`). A request that cannot be read gets a 400 of its own; the
rest of its batch is answered normally. Answers are JSON: tags with scores, a segmentation mask as
base64 PNG (`mask_png`, with `width`, `height` and `classes`), points in the request image's pixels,
or a sentiment label with each class's probability. A batch of texts runs in groups of similar length
(`serving.bundle.text_batches`), as the gRPC server runs it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from serving.bundle import Bundle, load_bundle
from serving.bundle.flow import Prepared, answer, stack_items
from serving.bundle.images import ImageDecodeError
from serving.bundle.runtimes import Device, cuda_available

log = logging.getLogger(__name__)

_BODY_KEYS = ("data", "body", "file", "image")  # where TorchServe puts a raw or multipart payload
_JSON_KEYS = ("data", "image", "b64")  # where a JSON body may hold an image's base64
_JSON_TEXT_KEYS = ("text", "data")  # where a JSON body may hold a text


class BundleHandler:
    def __init__(self) -> None:
        self.bundle: Bundle | None = None
        self.text = False  # a text model: requests carry texts, batches run grouped by length
        self.initialized = False

    # -- TorchServe's contract ----------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Load the bundle from the unpacked archive; runtime and threads from model-config.yaml."""
        settings = (context.model_yaml_config or {}).get("handler", {}) or {}
        workers = max(1, int((context.model_yaml_config or {}).get("minWorkers", 1)))
        threads = int(settings.get("threads") or max(1, (os.cpu_count() or 1) // workers))
        self.bundle = load_bundle(Path(context.system_properties["model_dir"]), threads=threads)
        runtime = settings.get("runtime", "onnx")
        gpu = context.system_properties.get("gpu_id") is not None and cuda_available(runtime)
        device: Device = "cuda" if gpu else "cpu"
        self.text = self.bundle.pipeline.preprocess.takes == "texts"
        self.runtime = self.bundle.runtime(runtime, device)
        self.runtime.run(self.bundle.pipeline.preprocess.warm_up_batch())  # the first request is not slow
        self.initialized = True
        log.info(
            "loaded %s v%s (%s on %s, %d threads)",
            self.bundle.manifest.name,
            self.bundle.manifest.version,
            runtime,
            device,
            threads,
        )

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """The bundle's request flow (`serving.bundle.flow`) over TorchServe's batch of requests."""
        prepared, errors = self.preprocess(data)
        for index, message in errors.items():
            context.set_response_status(400, message, idx=index)
        items = list(prepared.values())
        answers = iter(self.postprocess(self.inference([p.item for p in items]), [p.size for p in items]))
        return [{"error": errors[i]} if i in errors else next(answers) for i in range(len(data))]

    def preprocess(self, data: list[dict[str, Any]]) -> tuple[dict[int, Prepared], dict[int, str]]:
        """Each request's image or text prepared for the network (with its size), or why not."""
        assert self.bundle is not None
        preprocess = self.bundle.pipeline.preprocess
        read = request_text if self.text else request_bytes
        prepared: dict[int, Prepared] = {}
        errors = {}
        for index, row in enumerate(data):
            try:
                prepared[index] = preprocess.prepare_item(read(row))
            except (ImageDecodeError, ValueError) as err:  # TextError is a ValueError
                errors[index] = str(err)
        return prepared, errors

    def inference(self, items: list[np.ndarray]) -> np.ndarray:
        log.info("batch_size=%d", len(items))
        if not items or self.bundle is None:
            return np.zeros((0, len(self.bundle.manifest.labels) if self.bundle else 0), np.float32)
        return stack_items(self.bundle.pipeline.preprocess.run_items(items, self.runtime.run))

    def postprocess(self, outputs: np.ndarray, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
        assert self.bundle is not None
        if not len(outputs):
            return []
        answers = answer(self.bundle.pipeline, outputs, sizes)
        return [self.bundle.task.json_answer(self.bundle.manifest, a) for a in answers]


def request_payload(row: dict[str, Any]) -> Any:
    """What one TorchServe request row carries, as TorchServe decoded it: bytes (a raw body or form
    field), str (a `text/*` body) or a dict (a JSON body); None if the row holds nothing we know."""
    value = next((row[key] for key in _BODY_KEYS if key in row), None)
    if value is None and len(row) == 1:
        value = next(iter(row.values()))  # a multipart form with one field of any name
    return value


def request_text(row: dict[str, Any]) -> bytes | bytearray | str:
    """The text of one request: the body (UTF-8, checked when it is prepared) or JSON's `text`."""
    value = request_payload(row)
    if isinstance(value, dict):
        value = next((value[key] for key in _JSON_TEXT_KEYS if key in value), None)
        if not isinstance(value, str):
            raise ValueError(f"JSON body needs one of {list(_JSON_TEXT_KEYS)} holding the text as a string")
    if isinstance(value, bytes | bytearray | str):
        return value
    raise ValueError(
        f'no text in the request: send it as the body, a form field, or JSON {{"text": ...}} '
        f"(fields: {sorted(row)[:8]})"
    )


def request_bytes(row: dict[str, Any]) -> bytes:
    """The image bytes of one TorchServe request row, whichever way the client sent them."""
    value = request_payload(row)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict):
        encoded = next((value[key] for key in _JSON_KEYS if key in value), None)
        if not isinstance(encoded, str):
            raise ValueError(
                f"JSON body needs one of {list(_JSON_KEYS)} holding base64; got keys {sorted(value)[:8]}"
            )
        value = encoded
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"text body is not base64 ({err})") from err
    raise ValueError(
        f"no image in the request: send the bytes as the body, a form field, or base64 JSON "
        f"(fields: {sorted(row)[:8]})"
    )
