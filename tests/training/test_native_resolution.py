"""Segmentation at native resolution: a bundle exported with `resolution="native"` answers each image
at its own size, padded to the network's stride and cropped back, exactly as running the network on
the padded image by hand does; the default still squashes to the training size."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving.bundle import load_bundle
from serving.bundle.pipeline import ImagePreprocess
from training.errors import ConfigError
from training.export import export_stage


def strip(seg_images: Path, width: int = 150, height: int = 40) -> bytes:
    """A long strip cut from two of the set's images side by side: not a square, not the training size."""
    paths = sorted((seg_images / "images").glob("*.png"))[:2]
    canvas = Image.new("RGB", (width, height))
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            canvas.paste(image.convert("RGB").crop((0, 0, width // 2, height)), (i * width // 2, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def test_a_native_bundle_answers_as_the_network_on_the_padded_image_does(
    native_seg_bundle: Path, seg_images: Path
) -> None:
    bundle = load_bundle(native_seg_bundle)
    assert bundle.manifest.input is not None and bundle.manifest.input.resize == "pad"
    image = strip(seg_images)
    (answer,) = bundle.predict([image])
    assert answer["mask"].shape == (40, 150)
    # by hand: normalize, pad at the bottom and right with the mean colour (0) to 64×160, run the
    # fp32 network, take each pixel's best real class, crop to the image
    pre = bundle.pipeline.preprocess
    assert isinstance(pre, ImagePreprocess)
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(image)).convert("RGB"))).permute(2, 0, 1)
    x = (pixels.float() / 255 - torch.tensor(pre.mean).view(3, 1, 1)) / torch.tensor(pre.std).view(3, 1, 1)
    padded = torch.zeros(1, 3, 64, 160)
    padded[0, :, :40, :150] = x
    with torch.inference_mode():
        logits = bundle.pipeline.network.build()(padded)[0]
    logits = logits.clone()  # a tensor made in inference mode cannot be written outside it
    void = bundle.pipeline.postprocess.void
    if void is not None:
        logits[void] = -torch.inf
    expected = logits.argmax(0)[:40, :150].numpy()
    assert np.mean(answer["mask"] == expected) >= 0.995  # fp16 ONNX against fp32 PyTorch


def test_the_default_squashes_and_only_a_segmenter_may_go_native(
    seg_bundle: Path, trained_run: Path, tmp_path: Path, seg_images: Path
) -> None:
    squished = load_bundle(seg_bundle)
    assert squished.manifest.input is not None and squished.manifest.input.resize == "squish"
    assert squished.prepare([strip(seg_images)]).shape == (1, 3, 32, 32)
    with pytest.raises(ConfigError, match="only segmentation answers at any size"):
        export_stage(trained_run, "stage-1", "tags", tmp_path, parity_items=8, resolution="native")


def test_torchserves_handler_batches_images_of_different_sizes_at_native_resolution(
    native_seg_bundle: Path, seg_images: Path
) -> None:
    """TorchServe hands the handler whatever requests arrived together: their images pad to the
    largest and each answer is cropped back to its own image."""
    from types import SimpleNamespace

    from serving.torchserve_handler import BundleHandler

    handler = BundleHandler()
    context = SimpleNamespace(
        model_yaml_config={},
        system_properties={"model_dir": str(native_seg_bundle)},
        set_response_status=None,
    )
    handler.initialize(context)
    images = [strip(seg_images), strip(seg_images, width=64, height=70)]
    answers = handler.handle([{"body": image} for image in images], context)
    assert [(a["width"], a["height"]) for a in answers] == [(150, 40), (64, 70)]
    expected = load_bundle(native_seg_bundle).predict([images[1]])[0]["mask"]
    with Image.open(io.BytesIO(base64.b64decode(answers[1]["mask_png"]))) as mask:
        assert np.mean(np.asarray(mask) == expected) >= 0.99  # the bundle's answer for it alone


def test_a_native_bundle_gets_an_fp32_cpu_graph_never_an_int8_one(native_seg_bundle: Path) -> None:
    """int8 is calibrated at the training size; a segmenter at native resolution sees any size (an
    int8 graph passed the export's 99 % of pixels here, yet moved 2 % of another image's pixels)."""
    manifest = load_bundle(native_seg_bundle).manifest
    assert manifest.cpu_graph is not None and manifest.cpu_graph.precision == "fp32"
