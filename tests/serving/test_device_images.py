"""Preparing images on the inference device gives what the host path gives, and names bad items.

The CPU runs torchvision's own JPEG decoder (libjpeg-turbo, as Pillow's), so there the batch must
equal the host path's exactly; on CUDA nvJPEG's IDCT may differ by a few levels per pixel.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving.bundle import load_bundle
from serving.bundle.device_images import ItemDecodeError, prepare_on_device
from serving.bundle.pipeline import ImagePreprocess
from serving.server.batcher import BatchingConfig
from serving.server.decode_turns import DecodeTurns
from serving.server.prometheus import ServerMetrics
from serving.server.served_model import ItemError, ServedModel

PREPROCESS = ImagePreprocess(48, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def encoded(height: int, width: int, mode: str, fmt: str, seed: int = 0) -> bytes:
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


MIXED = [
    encoded(90, 120, "RGB", "JPEG"),
    encoded(64, 40, "L", "JPEG", 1),
    encoded(50, 70, "CMYK", "JPEG", 2),  # decoded on the host: nvJPEG has no CMYK
    encoded(30, 40, "RGB", "PNG", 3),
    encoded(200, 100, "RGB", "JPEG", 4),
]


def host_prepared(images: list[bytes]) -> np.ndarray:
    return np.stack([PREPROCESS.prepare_item(data).item for data in images])


def test_a_mixed_batch_on_the_cpu_equals_the_host_path_in_order() -> None:
    batch, sizes = prepare_on_device(PREPROCESS, MIXED, "cpu")
    assert batch.dtype == torch.float32 and batch.shape == (5, 3, 48, 48)
    assert sizes == [(90, 120), (64, 40), (50, 70), (30, 40), (200, 100)]
    # torchvision's resize on the device and Pillow's on the host differ by at most one grey level
    std = np.asarray(PREPROCESS.std).reshape(1, 3, 1, 1)
    grey_levels = (batch.numpy() - host_prepared(MIXED)) * std * 255
    assert np.abs(grey_levels).max() <= 1 + 1e-3


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (MIXED[0][: len(MIXED[0]) // 2], "truncated or corrupt"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", "not a decodable image"),
        (encoded(300, 300, "RGB", "JPEG"), "over the limit of 50,000"),
    ],
)
def test_a_bad_image_is_named_by_its_index(bad: bytes, reason: str) -> None:
    with pytest.raises(ItemDecodeError, match=reason) as caught:
        prepare_on_device(PREPROCESS, [MIXED[0], MIXED[3], bad, MIXED[1]], "cpu", max_pixels=50_000)
    assert caught.value.index == 2


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def photo_like(height: int, width: int, seed: int) -> bytes:
    """Smooth colour gradients with mild noise, as photographs are (unlike uniform noise)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rng = np.random.default_rng(seed)
    planes = [np.sin(6 * x + 3 * y + phase) for phase in rng.random(3) * 6]
    pixels = (np.stack(planes, -1) * 100 + 128 + rng.normal(0, 8, (height, width, 3))).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@needs_cuda
def test_on_cuda_nvjpeg_stays_within_a_few_levels_of_the_host_decode() -> None:
    """nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's: on photo-like images
    (measured on an H100: at most 3 levels of 255 after resizing), never by a visible amount."""
    images = [photo_like(480, 640, 0), photo_like(300, 200, 1), *MIXED[2:4]]
    batch, sizes = prepare_on_device(PREPROCESS, images, "cuda")
    assert batch.device.type == "cuda" and sizes == [(480, 640), (300, 200), (50, 70), (30, 40)]
    std = np.array(PREPROCESS.std).reshape(1, 3, 1, 1)
    levels = (batch.cpu().numpy() - host_prepared(images)) * std * 255
    assert np.abs(levels).max() <= 6 and np.abs(levels).mean() <= 1


@needs_cuda
def test_a_model_torch_runs_on_cuda_answers_as_when_prepared_on_the_host(
    bundle_path: Path, jpegs: list[bytes]
) -> None:
    """The same served model (CUDA graphs replayed), images prepared on the GPU or on the host:
    the same logits."""
    outputs = {}
    for on_gpu in (True, False):
        pool = ThreadPoolExecutor(2)
        model = ServedModel(
            load_bundle(bundle_path), "torch", "cuda", BatchingConfig(8, 1000, 64), DecodeTurns(pool, 2),
            ServerMetrics().for_model("tags", 1), 40_000_000, prepare_on_gpu=on_gpu, graphs="capture",
        )  # fmt: skip
        assert model.prepare_on_gpu is on_gpu and model.graphs == "capture"
        model.warm_up()

        async def ask(model: ServedModel = model) -> np.ndarray:
            model.start()
            try:
                items, _ = await model.prepare(jpegs[:6])
                if model.prepare_on_gpu:
                    assert all(isinstance(item, torch.Tensor) and item.is_cuda for item in items)
                    with pytest.raises(ItemError, match="item 1: not a decodable image"):
                        await model.prepare([jpegs[0], b"junk"])
                return await model.infer(items, timeout=None)
            finally:
                await model.stop()

        outputs[on_gpu] = asyncio.run(ask())
        pool.shutdown()
    np.testing.assert_allclose(outputs[True], outputs[False], atol=0.05)  # logits, fp16 both ways
