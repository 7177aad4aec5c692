"""The inference pipeline a bundle pickles: preprocessing, the network, postprocessing.

Only the classes that `serving.bundle.read` allow-lists may appear in `pipeline.pkl`: these, the
network specs, the tokenizer and each task's postprocess (`serving.bundle.tasks`). They hold plain
data and tensors, nothing callable from outside this package.

Every postprocess takes the network's raw outputs and each item's original (height, width), so
answers are in the caller's image: a mask resized back, points in its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2.functional import resize

from serving.bundle.images import MAX_PIXELS, decode_image
from serving.bundle.manifest import Precision
from serving.bundle.networks import NetworkSpec, build
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import BOS

__all__ = [
    "ImagePreprocess",
    "Network",
    "Pipeline",
    "Postprocess",
    "Preprocess",
    "Size",
    "pad_to_largest",
    "stack_items",
    "warm_up_batch",
]

Size = tuple[int, int]
"""An image's (height, width) in pixels."""


@dataclass(frozen=True)
class ImagePreprocess:
    """Decode, squish to `size`×`size` (as training resized), scale to [0, 1], normalize.

    `resize="pad"` (a segmenter's native resolution) keeps each image's own pixels instead and pads
    it at the bottom and right with the mean colour (0 after normalizing) to a multiple of `stride`,
    the network's total downsampling; a batch pads to its largest item. The postprocess crops the
    answer back to the image: nothing is squashed, and the padding never shows.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: Literal["squish", "pad"] = "squish"
    stride: int = 32

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
        """uint8 (3, H, W) → uint8 (3, size, size), the same kernel training's `Resize` runs (at
        native resolution: the image as it is)."""
        if self.resize == "pad":
            return image
        return resize(image, [self.size, self.size], antialias=True)

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded uint8 images → one normalized float32 batch (N, 3, size, size), on their device
        (at native resolution: (N, 3, H, W), padded to the largest item, a multiple of `stride`)."""
        if self.resize == "pad":  # normalized first, so the padding is 0: the mean colour
            return pad_to_largest(
                [self._normalized(image.float().div_(255)) for image in images], self.stride
            )
        return self._normalized(torch.stack([self.resized(image) for image in images]).float().div_(255))

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        """(…, 3, H, W) floats in [0, 1] → normalized in place, one batch or one image."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return x.sub_(mean).div_(std)


@overload
def stack_items(items: Sequence[np.ndarray]) -> np.ndarray: ...
@overload
def stack_items(items: Sequence[torch.Tensor]) -> torch.Tensor: ...
def stack_items(items: Sequence[np.ndarray] | Sequence[torch.Tensor]) -> np.ndarray | torch.Tensor:
    """Prepared images (or a network's per-image outputs) as one batch, where they are (host
    arrays, or tensors on a device); at native resolution, where sizes differ, padded to the
    largest (`pad_to_largest`)."""
    if len(items) == 1:  # a lone request's item: a view, no copy (but never of a client's read-only bytes)
        item = items[0]
        return item[None] if isinstance(item, torch.Tensor) or item.flags.writeable else item[None].copy()
    same = all(item.shape == items[0].shape for item in items)
    if isinstance(items[0], torch.Tensor):
        tensors = [torch.as_tensor(item) for item in items]
        return torch.stack(tensors) if same else pad_to_largest(tensors)
    if same:
        return np.stack(items)
    return pad_to_largest([torch.from_numpy(np.asarray(item)) for item in items]).numpy()


def pad_to_largest(items: Sequence[torch.Tensor], multiple: int = 1) -> torch.Tensor:
    """(C, H, W) items of any sizes → one (N, C, H', W') batch, each zero-padded at the bottom and
    right to the largest height and width, rounded up to a multiple of `multiple`."""
    height = max(int(item.shape[-2]) for item in items)
    width = max(int(item.shape[-1]) for item in items)
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    batch = items[0].new_zeros((len(items), int(items[0].shape[0]), height, width))
    for i, item in enumerate(items):
        batch[i, :, : item.shape[-2], : item.shape[-1]] = item
    return batch


class Postprocess(Protocol):
    """A task's postprocess: the network's raw outputs (one row per item) and each item's original
    (height, width) → one answer per item, in the task's own terms."""

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]: ...


Preprocess = ImagePreprocess | TextPreprocess


def warm_up_batch(preprocess: Preprocess, n: int = 1) -> np.ndarray:
    """`n` inputs the network takes, for a first run before any request: black images at the model's
    size, or 16 token ids each (`xxbos`, then padding)."""
    if isinstance(preprocess, TextPreprocess):
        batch = np.zeros((n, 16), np.int64)
        batch[:, 0] = BOS
        return batch
    return np.zeros((n, 3, preprocess.size, preprocess.size), np.float32)


@dataclass(frozen=True)
class Network:
    """A network's spec and weights (fp16, or fp32 where fp16 fails parity): enough to rebuild it
    without the training kit."""

    spec: NetworkSpec
    state: dict[str, torch.Tensor]

    @classmethod
    def from_module(cls, spec: NetworkSpec, module: nn.Module, precision: Precision = "fp16") -> Network:
        dtype = torch.float16 if precision == "fp16" else torch.float32
        state = {
            k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
            for k, v in module.state_dict().items()
        }
        return cls(spec, state)

    @property
    def precision(self) -> Precision:
        """fp16 if the weights are stored in it (every bundle before fp32 existed), else fp32."""
        return "fp16" if any(v.dtype == torch.float16 for v in self.state.values()) else "fp32"

    def build(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        model = build(self.spec)
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state.items()})
        return model.to(dtype).eval()


@dataclass(frozen=True)
class Pipeline:
    """Everything between encoded bytes and an answer, for one task (a name in the task registry)."""

    task: str
    preprocess: Preprocess
    network: Network
    postprocess: Any  # the task's postprocess class (`Postprocess`), checked against the registry
