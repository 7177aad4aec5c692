"""Training's loaders and a bundle prepare an image with the same code, so a bundle sees pixels
exactly as its model did: a validation batch equals the bundle's preparation of the same files, bit
for bit, at a size that makes both resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from serving.bundle.flow import predict
from serving.bundle.pipeline import ImagePreprocess
from tests.training.data.helpers import tag_source

STATS = ((0.45, 0.5, 0.55), (0.2, 0.25, 0.3))


def test_a_validation_batch_is_what_the_bundle_prepares_from_the_same_files(tag_images: Path) -> None:
    src = tag_source(tag_images)
    size = 24  # the images are 32 px: both sides resize
    data = src.transform(([], []), size=size).databunch(bs=8, num_workers=0, device="cpu").normalize(STATS)
    batch, _ = next(iter(data.valid_dl))
    preprocess = ImagePreprocess(size, *STATS)
    files = [Path(p) for p in src.valid.items[: len(batch)]]
    prepared = preprocess.batch([preprocess.prepare_item(f.read_bytes()).item for f in files])
    assert prepared.shape == tuple(batch.shape) == (len(files), 3, size, size)
    assert np.array_equal(prepared, batch.numpy())


def test_the_request_flow_answers_each_input_in_order() -> None:
    """`predict` walks decode → prepare → run → postprocess; the run sees the prepared batch."""
    preprocess = ImagePreprocess(8, (0.0,) * 3, (1.0,) * 3)
    images = [_png(value) for value in (0, 255, 128)]
    seen: list[np.ndarray] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(batch)
        return batch.mean(axis=(1, 2, 3), keepdims=False)[:, None]

    pipeline = _Pipeline(preprocess)
    answers = predict(pipeline, images, run)  # type: ignore[arg-type]
    assert [round(a["mean"], 3) for a in answers] == [0.0, 1.0, round(128 / 255, 3)]
    assert [b.shape for b in seen] == [(3, 3, 8, 8)]


class _Pipeline:
    """The parts of a `Pipeline` the flow reads: its preprocess and a postprocess."""

    def __init__(self, preprocess: ImagePreprocess) -> None:
        self.preprocess = preprocess

    @staticmethod
    def postprocess(outputs: np.ndarray, sizes: list[tuple[int, int]]) -> list[dict[str, float]]:
        assert sizes == [(5, 7)] * len(outputs)
        return [{"mean": float(row[0])} for row in outputs]


def _png(value: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_scaling_is_the_same_for_arrays_and_tensors() -> None:
    from serving.bundle.images import scale_pixels

    pixels = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    on_host = scale_pixels(pixels, *STATS)
    as_tensor = scale_pixels(torch.from_numpy(pixels)[None], *STATS)[0]
    assert on_host.dtype == np.float32 and on_host.flags.c_contiguous
    assert np.array_equal(on_host, as_tensor.numpy())
