"""The inference pipeline a bundle pickles: preprocessing, the network, postprocessing.

Only these classes (and the network specs) may appear in `pipeline.pkl`; the bundle loader
allow-lists exactly them. They hold plain data and tensors, nothing callable from outside this module.

Every postprocess takes the network's raw outputs and each item's original (height, width), so
answers are in the caller's image: a mask resized back, points in its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2.functional import resize

from serving.awd_lstm import AwdLstmSpec, build_text_network
from serving.images import MAX_PIXELS, decode_image
from serving.networks import CnnSpec, build_cnn
from serving.text import BOS, TextTokenizer
from serving.text_pipeline import SentimentPostprocess, TextPreprocess
from serving.unet import UnetSpec, build_unet

__all__ = [
    "PIPELINE_CLASSES",
    "ImagePreprocess",
    "MultiLabelPostprocess",
    "Network",
    "Pipeline",
    "PosePostprocess",
    "Postprocess",
    "Preprocess",
    "SegmentationPostprocess",
    "Size",
    "Task",
    "warm_up_batch",
]

Task = Literal["multilabel", "segmentation", "pose", "sentiment"]
Size = tuple[int, int]
"""An image's (height, width) in pixels."""


@dataclass(frozen=True)
class ImagePreprocess:
    """Decode, squish to `size`×`size` (as training resized), scale to [0, 1], normalize."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: Literal["squish"] = "squish"

    def decode(self, data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
        """The pixel limit is the caller's (the server's), never the bundle's."""
        return decode_image(data, max_pixels)

    def prepare(
        self, data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS
    ) -> tuple[np.ndarray, Size]:
        """One encoded image → one normalized float32 item (3, size, size), and its original size."""
        image = self.decode(data, max_pixels)
        return self([image])[0].numpy(), (int(image.shape[-2]), int(image.shape[-1]))

    def resized(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) → uint8 (3, size, size), the same kernel training's `Resize` runs."""
        return resize(image, [self.size, self.size], antialias=True)

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded uint8 images → one normalized float32 batch (N, 3, size, size), on their device."""
        batch = torch.stack([self.resized(image) for image in images]).float().div_(255)
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return batch.sub_(mean).div_(std)


@dataclass(frozen=True)
class MultiLabelPostprocess:
    """Sigmoid scores; a label is on when its score exceeds its threshold."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """(N, labels) sigmoid scores of the network's logits, computed without overflow."""
        return np.exp(-np.logaddexp(0.0, -outputs.astype(np.float64)))

    def on_labels(self, scores: np.ndarray) -> list[list[str]]:
        """Per item, the labels whose score exceeds their threshold, in label order."""
        limits = np.asarray(self.thresholds)
        return [[label for label, on in zip(self.labels, row > limits, strict=True) if on] for row in scores]

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size] = ()) -> list[dict[str, Any]]:
        """Labels and scores; `sizes` are not needed (an image's tags do not depend on its size)."""
        scores = self.scores(outputs)
        return [
            {"labels": on, "scores": {label: float(s) for label, s in zip(self.labels, row, strict=True)}}
            for on, row in zip(self.on_labels(scores), scores, strict=True)
        ]


@dataclass(frozen=True)
class SegmentationPostprocess:
    """Per-pixel argmax over the real classes (never `void`), resized back with nearest-neighbour."""

    codes: tuple[str, ...]
    void: int | None = None

    def class_ids(self, outputs: np.ndarray) -> np.ndarray:
        """(N, classes, h, w) logits → (N, h, w) uint8 class ids at the network's size."""
        if self.void is not None:
            outputs = outputs.copy()
            outputs[:, self.void] = -np.inf
        return outputs.argmax(axis=1).astype(np.uint8)

    def masks(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[np.ndarray]:
        """One (height, width) uint8 mask per item, at that item's original size."""
        return [
            ids
            if ids.shape == tuple(size)
            else np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.Resampling.NEAREST))
            for ids, size in zip(self.class_ids(outputs), sizes, strict=True)
        ]

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return [{"mask": mask} for mask in self.masks(outputs, sizes)]


@dataclass(frozen=True)
class PosePostprocess:
    """Coordinates in [-1, 1] of the network's square input → pixels of each original image.

    (-1, -1) is the top-left corner of the image and (1, 1) its bottom-right corner, so undoing
    the squish resize is one multiplication per axis.
    """

    points: tuple[str, ...]

    def pixels(self, outputs: np.ndarray, sizes: Sequence[Size]) -> np.ndarray:
        """(N, 2K) outputs → (N, K, 2) float32 (x, y) in each item's own pixels."""
        coords = outputs.reshape(len(outputs), len(self.points), 2).astype(np.float64)
        scale = np.array([[w, h] for h, w in sizes], np.float64).reshape(-1, 1, 2)
        return ((coords + 1) / 2 * scale).astype(np.float32)

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return [
            {
                "points": [
                    {"name": n, "x": float(x), "y": float(y)}
                    for n, (x, y) in zip(self.points, row, strict=True)
                ]
            }
            for row in self.pixels(outputs, sizes)
        ]


Postprocess = MultiLabelPostprocess | SegmentationPostprocess | PosePostprocess | SentimentPostprocess
Preprocess = ImagePreprocess | TextPreprocess


def warm_up_batch(preprocess: Preprocess, n: int = 1) -> np.ndarray:
    """`n` inputs the network takes, for a first run before any request: black images at the model's
    size, or 16 token ids each (`xxbos`, then padding)."""
    if isinstance(preprocess, TextPreprocess):
        batch = np.zeros((n, 16), np.int64)
        batch[:, 0] = BOS
        return batch
    return np.zeros((n, 3, preprocess.size, preprocess.size), np.float32)


NetworkSpec = CnnSpec | UnetSpec | AwdLstmSpec


@dataclass(frozen=True)
class Network:
    """A network's spec and fp16 weights: enough to rebuild it without the training kit."""

    spec: NetworkSpec
    state: dict[str, torch.Tensor]

    @classmethod
    def from_module(cls, spec: NetworkSpec, module: nn.Module) -> Network:
        state = {
            k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
            for k, v in module.state_dict().items()
        }
        return cls(spec, state)

    def build(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        if isinstance(self.spec, AwdLstmSpec):
            model = build_text_network(self.spec)
        else:
            model = build_unet(self.spec) if isinstance(self.spec, UnetSpec) else build_cnn(self.spec)
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state.items()})
        return model.to(dtype).eval()


@dataclass(frozen=True)
class Pipeline:
    """Everything between encoded bytes and an answer, for one task."""

    task: Task
    preprocess: Preprocess
    network: Network
    postprocess: Postprocess


PIPELINE_CLASSES: tuple[type, ...] = (
    Pipeline,
    ImagePreprocess,
    MultiLabelPostprocess,
    SegmentationPostprocess,
    PosePostprocess,
    Network,
    CnnSpec,
    UnetSpec,
    TextPreprocess,
    TextTokenizer,
    SentimentPostprocess,
    AwdLstmSpec,
)
