"""What clients send in the serving tests (and the soak benchmark): V2 inputs, hostile images, texts."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

TEXTS = [  # for the `sentiment_bundle` fixture
    "a wonderful , superb film . I loved it",
    "dull",
    "the plot was awful and the actors boring " * 30,  # over the bundle's 48 tokens: cut, as in training
    "Brilliant music , moving ending",
    "é 😀 ünïcödé, and a clumsy story",
]


def images_input(images: list[bytes]) -> triton.InferInput:
    """The V2 `images` input: a BYTES tensor [N] of encoded images."""
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def declared_png(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header declares `width`×`height` pixels: a decompression bomb's calling card."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


@dataclass
class Traffic:
    """What looping clients saw: the model version of each answer, and every failure."""

    versions: list[str] = field(default_factory=list)
    failures: list[InferenceServerException] = field(default_factory=list)


@contextmanager
def looping_clients(address: str, image: bytes, clients: int = 8, model: str = "tags") -> Iterator[Traffic]:
    """`clients` threads asking `model` about `image` back to back until the block ends."""
    traffic, stop = Traffic(), threading.Event()

    def client() -> None:
        connection = triton.InferenceServerClient(address)
        while not stop.is_set():
            try:
                result = connection.infer(model, [images_input([image])])
                traffic.versions.append(result.get_response().model_version)
            except InferenceServerException as err:
                traffic.failures.append(err)

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
        try:
            yield traffic
        finally:
            stop.set()
