"""The inference pipeline a bundle pickles: preprocessing, the network, postprocessing.

Only these classes (and `CnnSpec`) may appear in `pipeline.pkl`; the bundle loader allow-lists
exactly them. They hold plain data and tensors, nothing callable from outside this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2.functional import resize

from serving.images import MAX_PIXELS, decode_image
from serving.networks import CnnSpec, build_cnn

__all__ = ["PIPELINE_CLASSES", "ImagePreprocess", "MultiLabelPostprocess", "Network", "Pipeline", "Task"]

Task = Literal["multilabel", "segmentation", "pose", "sentiment"]


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

    def prepare(self, data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """One encoded image → one normalized float32 item (3, size, size), as a batch row."""
        return self([self.decode(data, max_pixels)])[0].numpy()

    def resized(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) → uint8 (3, size, size), the same kernel training's `Resize` runs."""
        return resize(image, [self.size, self.size], antialias=True)

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded uint8 images → one normalized float32 batch (N, 3, size, size)."""
        batch = torch.stack([self.resized(image) for image in images]).float().div_(255)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
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

    def __call__(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        scores = self.scores(outputs)
        return [
            {"labels": on, "scores": {label: float(s) for label, s in zip(self.labels, row, strict=True)}}
            for on, row in zip(self.on_labels(scores), scores, strict=True)
        ]


@dataclass(frozen=True)
class Network:
    """A network's spec and fp16 weights: enough to rebuild it without the training kit."""

    spec: CnnSpec
    state: dict[str, torch.Tensor]

    @classmethod
    def from_module(cls, spec: CnnSpec, module: nn.Module) -> Network:
        state = {
            k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
            for k, v in module.state_dict().items()
        }
        return cls(spec, state)

    def build(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        model = build_cnn(self.spec)
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state.items()})
        return model.to(dtype).eval()


@dataclass(frozen=True)
class Pipeline:
    """Everything between encoded bytes and an answer, for one task."""

    task: Task
    preprocess: ImagePreprocess
    network: Network
    postprocess: MultiLabelPostprocess


PIPELINE_CLASSES: tuple[type, ...] = (Pipeline, ImagePreprocess, MultiLabelPostprocess, Network, CnnSpec)
