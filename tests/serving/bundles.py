"""Tiny bundles for the serving tests, written by `serving.bundle`'s own writer: no training kit.

Each network is built from its spec with seeded random weights, then its last layer is rescaled
(`calibrate`) so that its outputs on the example batch spread around a useful centre: tags either
side of their threshold, classes that differ from item to item, points inside the image. The tests
check that the server answers as the bundle does, never that the answer is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from serving.bundle.export import ParityCheck, write_bundle
from serving.bundle.manifest import Precision
from serving.bundle.networks import AwdLstmSpec, CnnSpec, NetworkSpec, UnetSpec, build
from serving.bundle.pipeline import ImagePreprocess, Network, Pipeline, Preprocess
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from serving.bundle.tasks.pose import PosePostprocess
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import TextTokenizer

__all__ = [
    "COLOURS",
    "IMAGENET",
    "SENTENCES",
    "TAGS",
    "write_colours",
    "write_discs",
    "write_image_bundle",
    "write_rects",
    "write_reviews",
    "write_tags",
]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TAGS = ("blue", "green", "red", "square")
"""The labels of the tag images (`tests.conftest.write_tag_images`), sorted as a tags model lists them."""
COLOURS = ("blue", "green", "red")
SENTENCES = [
    "a wonderful , superb film . I loved it",
    "the story was dull and the plot terrible",
    "Brilliant music , moving ending",
    "boring actors , an awful , clumsy story . I hated it",
    "the director made a funny film with a superb camera",
    "the ending was terrible and the scenes were dull",
    "the plot was awful and the actors boring",
    "it was a moving story of music and a wonderful ending",
]
"""What the sentiment bundle's tokenizer learns its vocabulary from."""


def write_image_bundle(
    models: Path,
    name: str,
    task: str,
    spec: NetworkSpec,
    postprocess: object,
    images: Sequence[bytes | Path],
    size: int = 32,
    centre: float = 0.0,
    spread: float = 1.0,
    precision: Precision = "fp16",
    cpu_graph: bool = False,
    check: ParityCheck | None = None,
) -> Path:
    """`models/<name>/<next version>` for an image task, its last layer calibrated on `images`;
    with `cpu_graph`, a `model.cpu.onnx` quantized on them too, where it passes `check`."""
    preprocess = ImagePreprocess(size, *IMAGENET)
    decoded = [preprocess.decode(i.read_bytes() if isinstance(i, Path) else i) for i in images]
    example = preprocess(decoded)
    calibration = example if cpu_graph else None
    return _write(
        models,
        name,
        task,
        spec,
        preprocess,
        postprocess,
        example,
        centre,
        spread,
        precision,
        calibration,
        check,
    )


def write_tags(models: Path, images: Sequence[bytes | Path], name: str = "tags") -> Path:
    """Multi-label tags of the tag images, threshold 0.2 each (as `train-kit` exports them)."""
    post = MultiLabelPostprocess(TAGS, (0.2,) * len(TAGS))
    centre = float(np.log(0.2 / 0.8))  # half the scores over the threshold
    return write_image_bundle(
        models, name, "multilabel", CnnSpec("resnet18", len(TAGS)), post, images, centre=centre
    )


def write_colours(models: Path, images: Sequence[bytes | Path], name: str = "colours") -> Path:
    """One colour per image (single-label classification)."""
    post = SingleLabelPostprocess(COLOURS)
    return write_image_bundle(
        models, name, "classify", CnnSpec("resnet18", len(COLOURS)), post, images, spread=2.0
    )


def write_rects(models: Path, images: Sequence[bytes | Path], name: str = "rects") -> Path:
    """The rectangles' codes (Background, red, blue, Void; Void is never answered), a U-Net."""
    codes = ("Background", "red", "blue", "Void")
    post = SegmentationPostprocess(codes, void=3)
    return write_image_bundle(models, name, "segmentation", UnetSpec("resnet18", len(codes)), post, images)


def write_discs(models: Path, images: Sequence[bytes | Path], name: str = "discs") -> Path:
    """One point, `centre`, near the middle (spread 0.25 of the half-side): inside the image."""
    post = PosePostprocess(("centre",))
    return write_image_bundle(models, name, "pose", CnnSpec("resnet18", 2), post, images, spread=0.25)


def write_reviews(
    models: Path, texts: Sequence[str] = SENTENCES, name: str = "reviews", max_tokens: int = 48
) -> Path:
    """neg/pos with a tiny AWD-LSTM and a BPE tokenizer learnt from `texts`; longer texts are cut."""
    tokenizer = TextTokenizer.train(texts, vocab_size=120, min_frequency=1)
    spec = AwdLstmSpec(tokenizer.vocab_size, emb=16, hidden=16, layers=2, n_classes=2)
    preprocess = TextPreprocess(tokenizer, max_tokens, truncate=True)
    example = preprocess(list(texts))
    post = SingleLabelPostprocess(("neg", "pos"))
    return _write(models, name, "sentiment", spec, preprocess, post, example, 0.0, 2.0)


def _write(
    models: Path,
    name: str,
    task: str,
    spec: NetworkSpec,
    preprocess: Preprocess,
    postprocess: object,
    example: np.ndarray,
    centre: float,
    spread: float,
    precision: Precision = "fp16",
    calibration: np.ndarray | None = None,
    check: ParityCheck | None = None,
) -> Path:
    torch.manual_seed(0)
    model = build(spec).eval()
    calibrate(model, torch.from_numpy(example), centre, spread)
    pipeline = Pipeline(task, preprocess, Network.from_module(spec, model, precision), postprocess)
    return write_bundle(pipeline, models, name, example, check, calibration)


@torch.no_grad()
def calibrate(model: nn.Module, example: torch.Tensor, centre: float, spread: float) -> None:
    """Rescale the last layer (a Linear, or a U-Net's 1×1 convolution) so that on `example` each
    output has mean `centre` and standard deviation `spread` (over items, and pixels)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    outputs = model(example).float()
    axes = [0, *range(2, outputs.dim())]  # all but the output channel
    mean, std = outputs.mean(axes), outputs.std(axes).clamp_min(1e-6)
    scale = spread / std
    last.weight.mul_(scale.view(-1, *[1] * (last.weight.dim() - 1)))
    assert last.bias is not None, f"the last layer ({last}) has no bias to move"
    last.bias.sub_(mean).mul_(scale).add_(centre)
