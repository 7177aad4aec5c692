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
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from serving.bundle.flow import Input, Prepared, Run, Size, pad_to_largest, stack_items
from serving.bundle.images import (
    MAX_PIXELS,
    ImageHeader,
    decode_header,
    decode_pixels,
    read_header,
    resize_pixels,
    scale_pixels,
)
from serving.bundle.manifest import Precision
from serving.bundle.networks.specs import NetworkSpec
from serving.bundle.text_preprocess import TextPreprocess

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "ImagePreprocess",
    "Network",
    "Pipeline",
    "Postprocess",
    "Preprocess",
    "Size",
    "pad_to_largest",
    "stack_items",
]


@dataclass(frozen=True)
class ImagePreprocess:
    """Decode, squish to `size`×`size` (as training resized), scale to [0, 1], normalize: the
    functions of `serving.bundle.images`, the ones training's loaders run.

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
    takes: ClassVar[Literal["images"]] = "images"

    @property
    def item_shape(self) -> tuple[int, ...]:
        """(3, size, size); at native resolution (3, -1, -1): any height and width."""
        side = -1 if self.resize == "pad" else self.size
        return (3, side, side)

    @property
    def item_bytes(self) -> int:
        """A prepared float32 image at the training size (at native resolution, an image's own
        size may hold more: the server reserves the rest once it knows)."""
        return 4 * 3 * self.size**2

    def decode(self, data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """uint8 (H, W, 3), at full size, as training's loaders decode; the pixel limit is the
        caller's (the server's), never the bundle's."""
        return decode_pixels(data, max_pixels)

    def prepare_item(self, data: Input, max_pixels: int = MAX_PIXELS) -> Prepared:
        """One encoded image → one normalized float32 item (3, size, size), and its original size
        (as `decode` then `scaled`, but for a JPEG many times `size`: see `read_header`)."""
        return self.prepare_header(self.read_header(data, max_pixels))

    def read_header(self, data: Input, max_pixels: int = MAX_PIXELS) -> ImageHeader:
        """The image opened, nothing decoded, with what preparing it will hold (`header.holds`):
        the server budgets that before `prepare_header` decodes. A JPEG several times the model's
        size decodes at a reduced scale (`serving.bundle.images.DRAFT_MARGIN`)."""
        if isinstance(data, str):
            raise TypeError("an image model takes encoded images (bytes) or image files, not str")
        return read_header(data, max_pixels, self.size if self.resize == "squish" else None)

    def prepare_header(self, header: ImageHeader) -> Prepared:
        """An opened image → its prepared item and original size; squished as `scaled` squishes,
        without holding the full-size image more than once."""
        side = self.size if self.resize == "squish" else None
        pixels = decode_header(header, side)
        return Prepared(scale_pixels(pixels.transpose(2, 0, 1), self.mean, self.std), header.size)

    def scaled(self, pixels: np.ndarray) -> np.ndarray:
        """A decoded uint8 image (H, W, 3) → the normalized float32 item (3, size, size) (at native
        resolution, (3, H, W))."""
        if self.resize == "squish":
            pixels = resize_pixels(pixels, self.size)
        return scale_pixels(pixels.transpose(2, 0, 1), self.mean, self.std)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded uint8 images (H, W, 3) → one normalized float32 batch (N, 3, size, size) (at
        native resolution, padded to the largest item, a multiple of `stride`)."""
        return self.batch([self.scaled(image) for image in images])

    def batch(self, items: Sequence[Any]) -> Any:
        """Prepared items as one batch; at native resolution padded to a multiple of `stride`."""
        return stack_items(items, self.stride if self.resize == "pad" else 1)

    def run_items(self, items: Sequence[Any], run: Run) -> list[np.ndarray]:
        return list(run(self.batch(items)))

    def warm_up_batch(self, n: int = 1) -> np.ndarray:
        """`n` black images at the model's size."""
        return np.zeros((n, 3, self.size, self.size), np.float32)


class Postprocess(Protocol):
    """A task's postprocess: the network's raw outputs (one row per item) and each item's original
    (height, width) → one answer per item, in the task's own terms."""

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]: ...


Preprocess = ImagePreprocess | TextPreprocess
"""What a pipeline prepares with; both answer the request flow's questions (`serving.bundle.flow`)."""


@dataclass(frozen=True)
class Network:
    """A network's spec and weights (fp16, or fp32 where fp16 fails parity): enough to rebuild it
    without the training kit. The weights are numpy arrays, so a bundle unpickles without torch;
    only `build` (the PyTorch runtime, the exporter) needs it."""

    spec: NetworkSpec
    state: dict[str, np.ndarray]

    @classmethod
    def from_module(cls, spec: NetworkSpec, module: nn.Module, precision: Precision = "fp16") -> Network:
        dtype = np.float16 if precision == "fp16" else np.float32
        state = {}
        for name, value in module.state_dict().items():
            array = value.detach().cpu().numpy()
            state[name] = array.astype(dtype) if value.is_floating_point() else array
        return cls(spec, state)

    def __getstate__(self) -> dict[str, Any]:
        """Each weight as (dtype, shape, bytes): plain data, so unpickling names no global beyond
        the pipeline's own classes (not even numpy's array constructors)."""
        weights = {k: _parts(v) for k, v in self.state.items()}
        return {"spec": self.spec, "weights": weights}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "state" in state:  # format 1: torch.save'd tensors, as the PyTorch unpickler built them
            weights = {k: v.numpy() for k, v in state["state"].items()}
        else:
            weights = {k: _array(v) for k, v in state["weights"].items()}
        object.__setattr__(self, "spec", state["spec"])
        object.__setattr__(self, "state", weights)

    @property
    def precision(self) -> Precision:
        """fp16 if the weights are stored in it (every bundle before fp32 existed), else fp32."""
        return (
            "fp16"
            if any(str(v.dtype) in ("float16", "torch.float16") for v in self.state.values())
            else "fp32"
        )

    def build(self, dtype: torch.dtype | None = None) -> nn.Module:
        """The network with these weights, in `dtype` (default float32); `state` may also hold
        tensors (a training checkpoint's)."""
        import torch

        from serving.bundle.networks import build

        dtype = dtype or torch.float32
        model = build(self.spec)
        tensors = {k: torch.as_tensor(_writable(v)) for k, v in self.state.items()}
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()})
        return model.to(dtype).eval()


def _writable(weight: Any) -> Any:
    """A weight torch may own: an unpickled one is a read-only view of the pickle's bytes."""
    if isinstance(weight, np.ndarray) and not weight.flags.writeable:
        return weight.copy()
    return weight


def _parts(weight: Any) -> Any:
    """An array as (dtype, shape, bytes); anything else as it is (which the reader's field check
    refuses by name, rather than failing here)."""
    if isinstance(weight, np.ndarray):
        return (weight.dtype.str, weight.shape, weight.tobytes())
    return weight


def _array(parts: Any) -> Any:
    """A weight from its pickled parts: numbers only, and exactly as many bytes as its shape holds;
    what is not such parts stays as it is, for the field check to name."""
    if not (isinstance(parts, tuple) and len(parts) == 3 and isinstance(parts[2], bytes)):
        return parts
    dtype, shape, data = parts
    kind = np.dtype(dtype)
    if kind.kind not in "biuf" or len(data) != kind.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"a weight of {len(data)} bytes cannot be a {dtype} array of shape {shape}")
    return np.frombuffer(data, kind).reshape(shape)  # a read-only view of the pickle's bytes: no copy


@dataclass(frozen=True)
class Pipeline:
    """Everything between encoded bytes and an answer, for one task (a name in the task registry)."""

    task: str
    preprocess: Preprocess
    network: Network
    postprocess: Any  # the task's postprocess class (`Postprocess`), checked against the registry
