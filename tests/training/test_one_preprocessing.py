"""Training's loaders and a bundle prepare an image with the same code, so a bundle sees pixels
exactly as its model did: a validation batch equals the bundle's preparation of the same files, bit
for bit, at a size that makes both resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from serving.bundle import load_bundle
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


def test_the_request_flow_answers_each_input_in_order_in_one_batch(
    bundle_path: Path, tag_images: Path
) -> None:
    """`predict` walks decode → prepare → run → postprocess on a real bundle: one run for the whole
    batch, and every answer the one that image gets alone."""
    bundle = load_bundle(bundle_path)
    runtime = bundle.runtime("onnx")
    files = sorted((tag_images / "train").iterdir())[:5]
    seen: list[tuple[int, ...]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return runtime.run(batch)

    together = predict(bundle.pipeline, [f.read_bytes() for f in files], run)
    alone = [predict(bundle.pipeline, [f.read_bytes()], runtime.run)[0] for f in files]
    assert seen == [(5, 3, 32, 32)]
    assert [a["labels"] for a in together] == [a["labels"] for a in alone]
    for got, want in zip(together, alone, strict=True):
        assert max(abs(got["scores"][k] - want["scores"][k]) for k in want["scores"]) < 1e-5


def test_scaling_is_the_same_for_arrays_and_tensors() -> None:
    from serving.bundle.images import scale_pixels

    pixels = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    on_host = scale_pixels(pixels, *STATS)
    as_tensor = scale_pixels(torch.from_numpy(pixels)[None], *STATS)[0]
    assert on_host.dtype == np.float32 and on_host.flags.c_contiguous
    assert np.array_equal(on_host, as_tensor.numpy())
